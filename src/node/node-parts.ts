// Parts of a node built from its options alone: the forwarder, and with a coordinator the lease keeper.

import type { ClusterView } from '../cluster/cluster-view.js';
import { isMember } from '../cluster/epochs.js';
import { Forwarder } from '../peer/forwarder.js';
import type { Store } from '../storage/store.js';
import { LeaseKeeper } from './lease-keeper.js';
import type { Member } from './member.js';
import type { Config, ShardConfig } from '../core/config.js';
import type { Log } from '../core/log.js';
import type { RoleParts } from './role-factories.js';

/**
 * The node's forwarder. A member that answers a forwarded write with not_primary names its shard's
 * primary and epoch: this node learns them (only for a member of that shard) and the forwarder retries there.
 */
export function nodeForwarder(options: { readonly config: Config; readonly token: string; readonly log: Log }, view: ClusterView): Forwarder {
  const { config, token, log } = options;
  return new Forwarder({
    self: view.node,
    layoutId: config.layoutId,
    token,
    log,
    // The forward is retried at the primary the member names; the epoch itself is learned from the
    // exchanges (heartbeats), which carry it whole, rather than rebuilt from this answer.
    onNotPrimary: (name, primary) => {
      const member = config.shards.find((s) => s.name === name);
      return member !== undefined && isMember(member, primary);
    },
  });
}

/** With a coordinator: the member's lease and its watch of its shard's key in etcd. */
export function leaseKeeper(
  options: { readonly config: Config; readonly shard: ShardConfig; readonly log: Log },
  address: string,
  member: Member | undefined,
  store: Store,
  holder: { parts: RoleParts },
) {
  const settings = options.config.coordinator;
  if (member === undefined || settings === undefined) return undefined;
  return new LeaseKeeper({
    settings,
    shard: options.shard,
    address,
    member,
    log: options.log,
    complete: () => member.state.role === 'primary' || store.dataset.replicaComplete(),
    lag: () => holder.parts.lag?.() ?? 0,
    saved: store.failover,
  });
}
