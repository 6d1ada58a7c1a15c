// How a member starts from the epochs its data dir kept (node.ts): the role they give it, the store
// made to serve that role, and the wait for a majority to confirm them; and what /status says of them.

import { canonicalAddress, type RoleName } from '../core/config.js';
import type { Log } from '../core/log.js';
import { ClusterView } from '../cluster/cluster-view.js';
import type { Store } from '../storage/store.js';
import { roleFactories } from './role-factories.js';
import type { prepareLayout } from './startup.js';
import type { Config, ShardConfig } from '../core/config.js';

/** What a member's start says of it (node.ts's NodeOptions). */
interface MemberStart {
  readonly config: Config;
  readonly shard: ShardConfig;
  readonly role: RoleName;
  readonly log: Log;
  readonly overwriteReplica?: boolean;
}

/**
 * The node's view of the cluster, with the epochs its store kept, and the role they give it (cluster
 * state, not its place in sharding.toml); the store is made to serve that role.
 */
export async function openView(
  options: MemberStart,
  address: string,
  store: Store,
  layout: Awaited<ReturnType<typeof prepareLayout>>,
): Promise<{ view: ClusterView; role: RoleName }> {
  const { config, shard, log } = options;
  const own = roleFactories[options.role].ownLayout(config, layout);
  const view = new ClusterView(config, own, `${shard.name}/${options.role}`, layout.decided, log, () => (store.isEmpty() ? 0 : 1), address, performance.now());
  view.quorum.grantsSource = () => store.failover.grants();
  await loadEpochs(store, view, address, options.overwriteReplica === true);
  const role: RoleName =
    options.role === 'drain' ? 'drain' : canonicalAddress(view.shardNow(shard.idx).address) === canonicalAddress(address) ? 'primary' : 'replica';
  view.node = `${shard.name}/${role}`;
  await settleStore(store, role, options.role, view.epochIfListed(shard.name)?.epoch ?? 1, log);
  return { view, role };
}

/** What /status says of the node's epochs, grants and write fence. */
export function clusterStatus(view: ClusterView, shard: string) {
  const fence = view.quorum.writeFence(performance.now());
  return {
    epoch: view.epochIfListed(shard) ?? null,
    epochs_confirmed: view.quorum.epochsConfirmed,
    epochs_known: view.quorum.epochsKnown,
    epochs: view.epochs(),
    grants: view.quorum.grantsSource(),
    unresolved_grant: view.quorum.unresolvedGrant ?? null,
    write_fence: fence === undefined ? null : fence.code,
  };
}

/**
 * Takes the epochs this node's store kept. Any node may have missed a failover (a restarted one while
 * it was down, one with a new or emptied data dir ever since the cluster began), so as a primary it
 * takes writes only once a majority of nodes, or its shard's other member with its data dir intact,
 * has told it its epochs; a node without peers has nobody to ask. A node whose data dir kept no epochs
 * also refuses to grant promotions until then. --overwrite-replica is the operator saying this data is
 * the shard's: that primary serves at once, as it always did.
 */
export async function loadEpochs(store: Store, view: ClusterView, address: string, overwriteReplica: boolean): Promise<void> {
  const stored = store.failover.epochs();
  // A new data dir stores the initial epochs at once, but does not know them until a majority has
  // told it: a restart before that must not make it count as knowing.
  if (stored === undefined) await store.failover.recordEpochs(view.epochs(), false);
  else view.learnEpochs(stored, "this node's data dir");
  const hasPeers = view.config.shards.some((s) => s.address !== address || s.replica !== address);
  if (hasPeers && !overwriteReplica) view.quorum.awaitEpochConfirmation(stored !== undefined && store.failover.epochsKnown());
  view.quorum.whenKnown(() => void store.failover.recordEpochsKnown().catch(() => undefined));
}

/**
 * Makes the store serve `role` at start-up: a member whose epochs make it primary (or replica) but
 * whose store was last made to serve the other role (a failover it learned of before a crash, or the
 * first start after one) is promoted (or demoted) before it serves.
 */
export async function settleStore(store: Store, role: RoleName, configRole: RoleName, epoch: number, log: Log): Promise<void> {
  const was = store.failover.servesAs() ?? (configRole === 'replica' ? 'replica' : 'primary');
  if (role === 'primary' && was === 'replica') {
    await store.failover.promote(epoch);
    log.info("this member's epochs make it primary: its store now serves as primary");
  } else if (role === 'replica' && was === 'primary') {
    await store.failover.demote();
    log.info("this member's epochs make it a replica: its store now follows the primary");
  }
  store.failover.serveAs(role === 'replica' ? { role: 'replica' } : { role: 'primary', epoch });
}
