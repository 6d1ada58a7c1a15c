// How a member starts from the epochs its data dir kept (node.ts): the role they give it, the store
// made to serve that role, and the wait for a majority to confirm them; and what /status says of them.

import type { RoleName } from '../core/config.js';
import type { Log } from '../core/log.js';
import { ClusterView } from '../cluster/cluster-view.js';
import { type MemberEffect, type MemberState, start, type Transition } from '../cluster/member-role.js';
import { leaseDeadline } from '../cluster/coordinator.js';
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
 * The node's view of the cluster, with the epochs its store kept, and the member's start (member-role.ts):
 * the role they give it (cluster state, not its place in sharding.toml), with the store made to serve
 * that role already. A drain has no member state: its shard is not in the config.
 */
export async function openView(
  options: MemberStart,
  address: string,
  store: Store,
  layout: Awaited<ReturnType<typeof prepareLayout>>,
): Promise<{ view: ClusterView; role: RoleName; started: Transition | undefined }> {
  const { config, shard, log } = options;
  const own = roleFactories[options.role].ownLayout(config, layout);
  const view = new ClusterView(config, own, `${shard.name}/${options.role}`, layout.decided, log, () => (store.isEmpty() ? 0 : 1), address, performance.now());
  view.quorum.grantsSource = () => store.failover.grants();
  await loadEpochs(store, view, address, options.overwriteReplica === true);
  if (options.role === 'drain') {
    view.node = `${shard.name}/drain`;
    store.failover.serveAs({ role: 'primary', epoch: 1 });
    return { view, role: 'drain', started: undefined };
  }
  const epoch = view.epochOf(shard.name);
  const started = start({
    self: address,
    epoch: epoch.epoch,
    primary: epoch.primary,
    servedAs: store.failover.servesAs() ?? (options.role === 'replica' ? 'replica' : 'primary'),
    confirmed: view.quorum.epochsConfirmed,
    pausedAtEpoch: store.failover.switchoverPause<{ epoch: number }>()?.epoch,
    coordinator: config.coordinator && { ttlMs: config.coordinator.leaseTtlMs, maxLag: config.coordinator.maxLagOnFailover, startedAt: performance.now() },
  });
  const role = started.state.role;
  view.node = `${shard.name}/${role}`;
  for (const effect of started.effects) if (effect.type === 'serve') await serve(store, effect, log);
  return { view, role, started };
}

/** What /status says of the node's epochs, grants and write fence, and with a coordinator, of its lease. */
export function clusterStatus(view: ClusterView, shard: string, member: MemberState | undefined) {
  const now = performance.now();
  const fence = view.quorum.writeFence(now);
  const lease = member?.lease;
  return {
    epoch: view.epochIfListed(shard) ?? null,
    epochs_confirmed: view.quorum.epochsConfirmed,
    epochs_known: view.quorum.epochsKnown,
    epochs: view.epochs(),
    grants: view.quorum.grantsSource(),
    unresolved_grant: view.quorum.unresolvedGrant ?? null,
    write_fence: fence === undefined ? null : fence.code,
    ...(lease === undefined
      ? {}
      : {
          coordinator: {
            holds_key: lease.holdsKey,
            // Until the primary stops acknowledging writes: the TTL less the margin, from the last renewal sent.
            lease_remaining_ms: Math.max(0, Math.round(leaseDeadline(lease.renewalSentAt, lease.ttlMs) - now)),
            renewal_overdue: lease.overdue,
            waiting: lease.waiting ?? null,
          },
        }),
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
  // With a coordinator, etcd's key says who is primary: no majority of nodes confirms anything.
  const confirms = hasPeers && !overwriteReplica && view.config.coordinator === undefined;
  if (confirms) view.quorum.awaitEpochConfirmation(stored !== undefined && store.failover.epochsKnown());
  view.quorum.whenKnown(() => void store.failover.recordEpochsKnown().catch(() => undefined));
}

/**
 * Makes the store serve its role at start-up (member-role.ts's serve effect): a member whose epochs make
 * it primary (or replica) but whose store was last made to serve the other role (a failover it learned
 * of before a crash, or the first start after one) is promoted (or demoted) before it serves.
 */
async function serve(store: Store, effect: Extract<MemberEffect, { type: 'serve' }>, log: Log): Promise<void> {
  if (effect.role === 'primary') {
    if (effect.promote) {
      await store.failover.promote(effect.epoch);
      log.info("this member's epochs make it primary: its store now serves as primary");
    }
    store.failover.serveAs({ role: 'primary', epoch: effect.epoch });
    return;
  }
  if (effect.demote) {
    await store.failover.demote();
    log.info("this member's epochs make it a replica: its store now follows the primary");
  }
  store.failover.serveAs({ role: 'replica' });
}
