// Which member of each shard is primary now. sharding.toml lists a shard's two members (`address`, the
// primary at first, and `replica`); a failover makes the other member primary at a higher epoch. Every
// node keeps, durably, the epoch and primary it knows for every shard, and nodes exchange them: for each
// shard the highest epoch wins (Redis Cluster's configEpoch rule). Pure: cluster-view.ts holds the table,
// layout-sync.ts exchanges it, node.ts persists it and changes the node's role by it.

import { canonicalAddress, type ShardConfig } from '../core/config.js';

/**
 * How an epoch began: with the cluster, by a switchover (both members up), by a forced failover, or
 * (with a coordinator) by a campaign for a shard whose primary key was vacant: the lease expired.
 */
export type EpochKind = 'initial' | 'switchover' | 'forced' | 'lease_expired';

export interface ShardEpoch {
  /** Starts at 1; each failover adds one. */
  readonly epoch: number;
  /** The `host:port` of the member that is primary at this epoch: the shard's `address` or its `replica`. */
  readonly primary: string;
  readonly kind: EpochKind;
  /** When the epoch began (ISO time); null for the initial one. */
  readonly at: string | null;
}

/** Every shard's epoch, by shard name. */
export type EpochTable = Readonly<Record<string, ShardEpoch>>;

export function initialEpoch(shard: ShardConfig): ShardEpoch {
  return { epoch: 1, primary: shard.address, kind: 'initial', at: null };
}

/** The shard's other member: the replica when `member` is its primary, and the other way round. */
export function otherMember(shard: ShardConfig, member: string): string {
  return canonicalAddress(member) === canonicalAddress(shard.address) ? shard.replica : shard.address;
}

/** Whether `address` is one of the shard's two members. */
export function isMember(shard: ShardConfig, address: string): boolean {
  const want = canonicalAddress(address);
  return want === canonicalAddress(shard.address) || want === canonicalAddress(shard.replica);
}

/** The shard as it stands at `epoch`: `address` is its primary now, `replica` its replica now. */
export function shardAt(shard: ShardConfig, epoch: ShardEpoch): ShardConfig {
  if (canonicalAddress(epoch.primary) === canonicalAddress(shard.address)) return shard;
  return { ...shard, address: shard.replica, replica: shard.address };
}

/**
 * What a node does with a peer's epoch for a shard: adopt it (higher), keep its own (lower or equal),
 * or, when both claim one epoch with different primaries (which grants never produce; only
 * --without-majority can), keep its own and say so: 'conflict', which the caller logs as an error.
 */
export type EpochVerdict = { readonly kind: 'adopt' } | { readonly kind: 'keep' } | { readonly kind: 'conflict' };

export function judgeEpoch(mine: ShardEpoch, theirs: ShardEpoch): EpochVerdict {
  if (theirs.epoch > mine.epoch) return { kind: 'adopt' };
  if (theirs.epoch < mine.epoch) return { kind: 'keep' };
  if (canonicalAddress(mine.primary) !== canonicalAddress(theirs.primary)) return { kind: 'conflict' };
  // The same epoch heard first from a request (no time or kind), then from a peer that knows both.
  return mine.at === null && theirs.at !== null ? { kind: 'adopt' } : { kind: 'keep' };
}

/**
 * A shard epoch as another node sent it, checked: a positive whole epoch whose primary is one of the
 * shard's two members in this node's config. Undefined for anything else, which is ignored.
 */
export function decodeEpoch(raw: unknown, shard: ShardConfig): ShardEpoch | undefined {
  const e = raw as Partial<ShardEpoch> | null;
  if (typeof e !== 'object' || e === null) return undefined;
  if (!Number.isSafeInteger(e.epoch) || (e.epoch as number) < 1 || typeof e.primary !== 'string' || !isMember(shard, e.primary)) return undefined;
  const kind: EpochKind = e.kind === 'switchover' || e.kind === 'forced' || e.kind === 'lease_expired' ? e.kind : 'initial';
  return { epoch: e.epoch as number, primary: e.primary, kind, at: typeof e.at === 'string' ? e.at.slice(0, 40) : null };
}
