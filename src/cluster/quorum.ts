// Majorities, and when this node last heard from each peer. Pure apart from the clock, which every
// call takes as an argument (the table tests in test/unit/quorum.test.ts set it).
//
// Who votes: every node of the current layout (primaries and replicas of every shard) and, while a
// migration runs, every node of the previous layout too; a decision needs a majority of each set.
// Heard: a layout or epoch exchange with the peer completed, in either direction.

import { canonicalAddress, type ShardConfig } from '../core/config.js';

/** The smallest majority of `n` voters. */
export function majorityOf(n: number): number {
  return Math.floor(n / 2) + 1;
}

/** The voters of one layout: both members of every shard, each address once. */
export function votersOf(shards: readonly ShardConfig[]): string[] {
  const set = new Set<string>();
  for (const shard of shards) {
    set.add(canonicalAddress(shard.address));
    set.add(canonicalAddress(shard.replica));
  }
  return [...set];
}

/** Whether the addresses in `yes` are a majority of every voter set in `sets`. */
export function isMajority(yes: ReadonlySet<string>, sets: readonly (readonly string[])[]): boolean {
  return sets.every((voters) => voters.filter((v) => yes.has(v)).length >= majorityOf(voters.length));
}

/** Why `yes` is no majority, for a refusal: "2 of 6 (need 4)" per voter set. */
export function describeCount(yes: ReadonlySet<string>, sets: readonly (readonly string[])[]): string {
  return sets.map((voters) => `${voters.filter((v) => yes.has(v)).length} of ${voters.length} (need ${majorityOf(voters.length)})`).join(' and ');
}

/**
 * Whether the minority rule protects anything: a voter set where every majority includes this node
 * (one shard: two nodes) can promote no other member without this one (short of --without-majority),
 * so a primary there keeps taking writes while its peer is down, as a lone Redis master does.
 */
export function canElectWithout(sets: readonly (readonly string[])[]): boolean {
  return sets.every((voters) => voters.length - 1 >= majorityOf(voters.length));
}

/**
 * When this node last heard from each peer, and since when it has heard from a majority, on a monotonic
 * clock (performance.now(): a step of the wall clock must neither fence nor unfence anyone). Two
 * records, because the two questions differ:
 * - heard: any exchange with the peer, in either direction. A granter asks this of the primary, and
 *   a message that arrived at all proves the primary alive.
 * - answered: a round trip this node started, dated when it sent the request. A primary asks this of a
 *   majority: messages that reach it while its own go nowhere (a one-way cut), or replies it reads late
 *   after a stall, do not prove the majority still hears it.
 * A node that starts counts every peer as heard and answered at its start: a primary gets half a node
 * timeout to reach its peers (a restarted one serves writes only after a majority confirmed its epochs
 * anyway), and a granter waits a whole node timeout before it grants a promotion over a primary it
 * never heard.
 */
export class Liveness {
  private readonly lastHeard = new Map<string, number>();
  private readonly lastAnswered = new Map<string, number>();

  constructor(
    private readonly self: string,
    private readonly startedAt: number,
  ) {}

  /** A peer answered, or sent an exchange this node answered. */
  heard(address: string, now: number): void {
    this.lastHeard.set(canonicalAddress(address), now);
  }

  /** A peer answered a request this node sent at `sentAt`. */
  answered(address: string, sentAt: number): void {
    const key = canonicalAddress(address);
    this.lastAnswered.set(key, Math.max(sentAt, this.lastAnswered.get(key) ?? Number.NEGATIVE_INFINITY));
  }

  /** When this node last heard from `address` (its own start when never). */
  lastHeardFrom(address: string): number {
    return this.lastHeard.get(canonicalAddress(address)) ?? this.startedAt;
  }

  /**
   * Since when a majority of every voter set has answered this node: the send time of the oldest round
   * trip among the newest of enough voters (itself counted as always answering).
   */
  majorityAt(sets: readonly (readonly string[])[]): number {
    const self = canonicalAddress(this.self);
    let at = Number.POSITIVE_INFINITY;
    for (const voters of sets) {
      const times = voters.map((v) => (v === self ? Number.POSITIVE_INFINITY : (this.lastAnswered.get(v) ?? this.startedAt))).sort((a, b) => b - a);
      const need = majorityOf(voters.length);
      at = Math.min(at, times[need - 1] ?? Number.NEGATIVE_INFINITY);
    }
    return at;
  }
}
