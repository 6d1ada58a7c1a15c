// What kvshard keeps in etcd when a coordinator decides who is primary, and the pure decisions around it:
// per shard, one key naming the primary member and its epoch, bound to that member's lease, and one
// counter of the shard's epochs. A member becomes primary only through one transaction that creates the
// key and raises the counter; its compares make sure nobody holds the key and nobody raised the counter
// since the member read it. The epoch it takes is above both the counter and the highest epoch the
// member knows, so the counter never falls below an epoch a member holds (a running cluster switched to
// etcd, or etcd's data lost). The lease is timed from the moment the member sent its last keepalive that
// etcd answered, never from a client library's events.

import type { EtcdKv, EtcdTxn, EtcdTxnReply } from '../peer/etcd-client.js';

/** The keys of one shard under a cluster's prefix. */
export interface ShardKeys {
  readonly primary: string;
  readonly epoch: string;
}

export function shardKeys(prefix: string, shard: string): ShardKeys {
  return { primary: `${prefix}/shards/${shard}/primary`, epoch: `${prefix}/shards/${shard}/epoch` };
}

/** Who holds a shard's primary key: a member address and the epoch it took. */
export interface Holder {
  readonly member: string;
  readonly epoch: number;
}

/** A shard's epoch counter as read: its value and its mod revision (0: the key does not exist). */
export interface Counter {
  readonly epoch: number;
  readonly modRevision: number;
}

export function decodeHolder(kv: EtcdKv | undefined): Holder | undefined {
  if (kv === undefined) return undefined;
  try {
    const parsed = JSON.parse(kv.value) as { member?: unknown; epoch?: unknown };
    if (typeof parsed.member !== 'string' || !Number.isSafeInteger(parsed.epoch) || (parsed.epoch as number) < 1) return undefined;
    return { member: parsed.member, epoch: parsed.epoch as number };
  } catch {
    return undefined;
  }
}

export function decodeCounter(kv: EtcdKv | undefined): Counter {
  if (kv === undefined) return { epoch: 0, modRevision: 0 };
  const epoch = Number(kv.value);
  return { epoch: Number.isSafeInteger(epoch) && epoch > 0 ? epoch : 0, modRevision: kv.modRevision };
}

/** A campaign for a shard's primary key: the epoch it would take and the transaction that takes it. */
export interface Campaign {
  readonly epoch: number;
  readonly txn: EtcdTxn;
}

/**
 * The transaction by which `member` takes `keys`' shard at the next epoch: above the counter as read
 * and above `knownEpoch`, the highest epoch of the shard the member knows. It succeeds only if nobody
 * holds the primary key (or, for a switchover, `replacing`: the key is still the revision read, the
 * paused primary's) and the counter is still as read; else it reads both back.
 */
export function campaign(keys: ShardKeys, member: string, knownEpoch: number, counter: Counter, lease: string, replacing?: number): Campaign {
  const epoch = Math.max(counter.epoch, knownEpoch) + 1;
  const holder: Holder = { member, epoch };
  return {
    epoch,
    txn: {
      compare: [
        replacing === undefined ? { key: keys.primary, target: 'CREATE', revision: 0 } : { key: keys.primary, target: 'MOD', revision: replacing },
        { key: keys.epoch, target: 'MOD', revision: counter.modRevision },
      ],
      success: [
        { put: keys.primary, value: JSON.stringify(holder), lease },
        { put: keys.epoch, value: String(epoch) },
      ],
      failure: [{ range: keys.primary }, { range: keys.epoch }],
    },
  };
}

export type CampaignOutcome =
  | { readonly won: true; readonly epoch: number }
  /** Lost: the holder if someone holds the key, and the counter as it stands now (to campaign again from). */
  | { readonly won: false; readonly holder: Holder | undefined; readonly counter: Counter };

export function campaignOutcome(attempt: Campaign, reply: EtcdTxnReply): CampaignOutcome {
  if (reply.succeeded) return { won: true, epoch: attempt.epoch };
  return { won: false, holder: decodeHolder(reply.ranges[0]?.[0]), counter: decodeCounter(reply.ranges[1]?.[0]) };
}

/**
 * The margin by which a primary stops acknowledging writes before its lease could have expired at
 * etcd: etcd counts the TTL from when it received the keepalive, later than it was sent, so only a
 * difference in clock rates and the time to act on the deadline are left to cover.
 */
export function leaseMarginMs(ttlMs: number): number {
  return Math.max(500, Math.floor(ttlMs / 10));
}

/**
 * Whether a lease whose last keepalive that etcd answered was sent at `renewalSentAt` (performance.now()
 * milliseconds) is surely alive at `now`: until `ttlMs` minus the margin after that send.
 */
export function leaseHolds(renewalSentAt: number, ttlMs: number, now: number): boolean {
  return now < leaseDeadline(renewalSentAt, ttlMs);
}

/** Until when (performance.now()) a lease renewed by a keepalive sent at `renewalSentAt` surely lives. */
export function leaseDeadline(renewalSentAt: number, ttlMs: number): number {
  return renewalSentAt + ttlMs - leaseMarginMs(ttlMs);
}

/** How often a member renews its lease and reads its shard's key: a third of the TTL, at most every 500 ms. */
export function keyPollMs(ttlMs: number): number {
  return Math.min(ttlMs / 3, 500);
}

/**
 * How long a replica leaves a vacant key to the member its epochs name as primary before it campaigns
 * itself: one and a half polls, so a live primary that reads the key just after the replica still takes
 * it first (a cluster switched to etcd, or restarted whole, keeps its primaries). A dead primary's shard
 * fails over that much later.
 */
export function replicaHeadStartMs(ttlMs: number): number {
  return keyPollMs(ttlMs) * 1.5;
}

/**
 * The head start when etcd's data is new (no epoch counter: a cluster just switched to etcd), lost (no
 * counter) or restored (its revision went back). A primary then still counts on the lease it renewed
 * before, which etcd no longer has, for up to the TTL less the margin after that renewal, which came
 * before the replica saw the key vacant; a full TTL after that sight, it has stopped acknowledging
 * writes.
 */
export function replicaHeadStartAfterEtcdLossMs(ttlMs: number): number {
  return ttlMs;
}
