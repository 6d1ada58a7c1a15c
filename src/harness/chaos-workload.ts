// The writers and readers of a chaos run. Each writer owns keys of one shard and writes them one at a
// time, each value unique, straight to the member it believes is the shard's primary, so the history
// knows which member acknowledged each write (a forwarded answer does not say). A write sent to a
// member that serves as replica is refused (403) and names the primary now, which the writers then
// use. Readers read any key through any member, forwarding included, for load on the read paths.

import { jumpHash, keySlot } from '../core/slots.js';
import { mulberry32 } from './chaos-schedule.js';
import { answerCharsMax, httpGet, jsonOf, sleep } from './chaos-http.js';

export interface ShardMembers {
  readonly name: string;
  /** Member a (the config's `address`) and member b (its `replica`). */
  readonly a: string;
  readonly b: string;
}

/** One write as recorded in the history file. */
export interface WriteRecord {
  readonly type: 'write';
  readonly writer: number;
  readonly shard: string;
  readonly key: string;
  readonly value: string;
  readonly ack: 'primary' | 'replica';
  /** The member the write was sent to, and that answered. */
  readonly member: string;
  readonly invokedMs: number;
  readonly completedMs: number;
  readonly outcome: 'ok' | 'failed' | 'unknown';
  readonly status?: number;
  /** The error code of a refusal, or how the request failed without an answer. */
  readonly error?: string;
  /** From the answer of an acknowledged write, when it carries one. */
  readonly epoch?: number;
  readonly seq?: number;
}

export interface ReadRecord {
  readonly type: 'read';
  readonly key: string;
  readonly via: string;
  readonly invokedMs: number;
  readonly completedMs: number;
  readonly status?: number;
  readonly role?: string | null;
  readonly value?: string;
  readonly error?: string;
}

/** Bounds of the workload, each a reason a run cannot grow without end. */
export interface WorkloadBounds {
  /** Requests (writes and reads) the whole run may send. */
  readonly requestsMax: number;
  /** A write's timeout: above the 5 s an ack=replica write may wait for the replica. */
  readonly writeTimeoutMs: number;
  readonly readTimeoutMs: number;
  /** Pause after each operation of a writer or reader, so 2 cores can also run 6 members. */
  readonly pauseMs: number;
}

export const defaultBounds: WorkloadBounds = { requestsMax: 20_000, writeTimeoutMs: 8_000, readTimeoutMs: 5_000, pauseMs: 15 };

/** Keys named `w<writer>-<n>` that `shard` owns among `shardCount` shards. */
export function keysOwnedBy(writer: number, shardIdx: number, shardCount: number, count: number): string[] {
  const keys: string[] = [];
  for (let n = 0; keys.length < count; n++) {
    const key = `w${writer}-${n}`;
    if (jumpHash(keySlot(Buffer.from(key, 'utf8')), shardCount) === shardIdx) keys.push(key);
  }
  return keys;
}

/** The operations of a run, and what it shares between its writers and readers. */
export class Workload {
  readonly writes: WriteRecord[] = [];
  readonly reads: ReadRecord[] = [];
  private requests = 0;
  private stopped = false;
  /** Per shard, the member the writers believe is primary now. */
  private readonly primaryGuess = new Map<string, string>();

  constructor(
    private readonly shards: readonly ShardMembers[],
    private readonly startedAt: number,
    private readonly bounds: WorkloadBounds,
  ) {
    for (const s of shards) this.primaryGuess.set(s.name, s.a);
  }

  now(): number {
    return Date.now() - this.startedAt;
  }

  stop(): void {
    this.stopped = true;
  }

  private take(): boolean {
    if (this.stopped || this.requests >= this.bounds.requestsMax) return false;
    this.requests++;
    return true;
  }

  /** Runs `writersPerShard` writers per shard and `readers` readers until stop() or the request bound. */
  async run(seed: number, writersPerShard: number, keysPerWriter: number, readers: number): Promise<void> {
    const loops: Promise<void>[] = [];
    const allKeys: string[] = [];
    this.shards.forEach((shard, idx) => {
      for (let i = 0; i < writersPerShard; i++) {
        const writer = idx * writersPerShard + i;
        const keys = keysOwnedBy(writer, idx, this.shards.length, keysPerWriter);
        allKeys.push(...keys);
        loops.push(this.writer(writer, shard, keys, mulberry32(seed ^ (writer * 7919 + 1))));
      }
    });
    for (let r = 0; r < readers; r++) loops.push(this.reader(allKeys, mulberry32(seed ^ (r * 104_729 + 2))));
    await Promise.all(loops);
  }

  /** Every key a writer of the last run() owns, by shard. */
  keysByShard(writersPerShard: number, keysPerWriter: number): Map<string, string[]> {
    return new Map(
      this.shards.map((shard, idx) => [
        shard.name,
        Array.from({ length: writersPerShard }, (_, i) => keysOwnedBy(idx * writersPerShard + i, idx, this.shards.length, keysPerWriter)).flat(),
      ]),
    );
  }

  private async writer(writer: number, shard: ShardMembers, keys: readonly string[], random: () => number): Promise<void> {
    for (let n = 0; this.take(); n++) {
      const key = keys[Math.floor(random() * keys.length)]!;
      const record = await this.write(writer, shard, key, `w${writer}.${n}`, random() < 0.5 ? 'primary' : 'replica');
      this.writes.push(record);
      // A refusal or a failure is retried after a moment, not hammered.
      await sleep(record.outcome === 'ok' ? this.bounds.pauseMs : 100);
    }
  }

  private otherMember(shard: ShardMembers, member: string): string {
    return member === shard.a ? shard.b : shard.a;
  }

  private async write(writer: number, shard: ShardMembers, key: string, value: string, ack: 'primary' | 'replica'): Promise<WriteRecord> {
    const member = this.primaryGuess.get(shard.name)!;
    const path = `/set?key=${encodeURIComponent(key)}&value=${encodeURIComponent(value)}&ack=${ack}`;
    const invokedMs = this.now();
    const result = await httpGet(`http://${member}${path}`, this.bounds.writeTimeoutMs);
    const base = { type: 'write', writer, shard: shard.name, key, value, ack, member, invokedMs, completedMs: this.now() } as const;
    if (result.kind !== 'answer') {
      // Perhaps this member is down or cut off: the next write tries the other one.
      this.primaryGuess.set(shard.name, this.otherMember(shard, member));
      return { ...base, outcome: result.kind === 'refused' ? 'failed' : 'unknown', error: `${result.kind}: ${result.error}`.slice(0, answerCharsMax) };
    }
    const body = jsonOf(result.body);
    if (result.status === 200) {
      const epoch = typeof body['epoch'] === 'number' ? body['epoch'] : undefined;
      const seq = typeof body['seq'] === 'number' ? body['seq'] : undefined;
      return { ...base, outcome: 'ok', status: 200, epoch, seq };
    }
    const primary = body['primary'];
    if (typeof primary === 'string' && (primary === shard.a || primary === shard.b)) this.primaryGuess.set(shard.name, primary);
    // The API's contract: a 502, 504 or 500, or an answer saying the primary committed it, leaves the
    // write possibly applied; any other refusal applied nothing.
    const applied =
      result.status === 502 ||
      result.status === 504 ||
      result.status === 500 ||
      body['committed_on_primary'] === true ||
      body['error'] === 'write_outcome_unknown';
    const error = typeof body['error'] === 'string' ? body['error'] : result.body.slice(0, answerCharsMax);
    return { ...base, outcome: applied ? 'unknown' : 'failed', status: result.status, error };
  }

  private async reader(keys: readonly string[], random: () => number): Promise<void> {
    const members = this.shards.flatMap((s) => [s.a, s.b]);
    while (this.take()) {
      const key = keys[Math.floor(random() * keys.length)]!;
      const via = members[Math.floor(random() * members.length)]!;
      const invokedMs = this.now();
      const result = await httpGet(`http://${via}/get?key=${encodeURIComponent(key)}`, this.bounds.readTimeoutMs);
      const completedMs = this.now();
      if (result.kind === 'answer') {
        const value = result.status === 200 ? result.body.slice(0, answerCharsMax) : undefined;
        const error = result.status === 200 ? undefined : (jsonOf(result.body)['error'] as string | undefined);
        this.reads.push({ type: 'read', key, via, invokedMs, completedMs, status: result.status, role: result.role, value, error });
      } else {
        this.reads.push({ type: 'read', key, via, invokedMs, completedMs, error: `${result.kind}: ${result.error}`.slice(0, answerCharsMax) });
      }
      await sleep(this.bounds.pauseMs);
    }
  }
}
