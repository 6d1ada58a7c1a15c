// A running client workload for the tests that resize or fail over a cluster under a KvClient: writers
// that set new keys (each acknowledged write remembered with its ack mode) and readers that read back
// what was acknowledged, counting every error that surfaced to the caller.

import type { KvClient } from '../../src/client/index.js';
import { KvClientError } from '../../src/client/index.js';
import { metricValue, scrape } from './metrics.js';

export interface Acked {
  readonly value: string;
  readonly ack: 'primary' | 'replica';
}

export class ClientLoop {
  readonly acked = new Map<string, Acked>();
  /** Errors the client gave up with, as `<op> <key>: <code> <message>`. */
  readonly errors: string[] = [];
  /** Reads that returned something else than the value acknowledged for the key. */
  readonly wrong: string[] = [];
  /**
   * ack=replica writes the primary committed while its shard had no replica to apply them (after a forced
   * failover, until the old primary rejoins): the server says so (replica_unavailable or replica_timeout,
   * committed_on_primary), and they count as ack=primary writes.
   */
  committedWithoutReplica = 0;
  reads = 0;
  private stopped = false;
  private readonly runs: Promise<void>[];

  constructor(
    private readonly client: KvClient,
    prefix: string,
    /** Writes at most this many keys per writer: the loop is bounded even when nobody stops it. */
    perWriter = 20_000,
    writers = 8,
  ) {
    const write = Array.from({ length: writers }, (_, w) => this.writer(`${prefix}${w}-`, w % 4 === 0 ? 'replica' : 'primary', perWriter));
    const read = Array.from({ length: 4 }, () => this.reader(perWriter * writers));
    this.runs = [...write, ...read];
  }

  private async writer(prefix: string, ack: 'primary' | 'replica', count: number): Promise<void> {
    for (let n = 0; !this.stopped && n < count; n++) {
      const key = `${prefix}${n}`;
      const value = `v-${key}`;
      try {
        await this.client.set(key, value, { ack });
        this.acked.set(key, { value, ack });
      } catch (err) {
        if (err instanceof KvClientError && err.committed) {
          this.acked.set(key, { value, ack: 'primary' });
          this.committedWithoutReplica++;
        } else this.note('set', key, err);
      }
    }
  }

  private async reader(count: number): Promise<void> {
    for (let n = 0; !this.stopped && n < count; n++) {
      const keys = [...this.acked.keys()];
      if (keys.length === 0) {
        await new Promise((r) => setTimeout(r, 10));
        continue;
      }
      const key = keys[Math.floor(Math.random() * keys.length)]!;
      const expected = this.acked.get(key)!;
      try {
        const got = await this.client.get(key);
        this.reads++;
        // An ack=primary write may be lost by a forced failover: only ack=replica ones must always read back.
        if (got?.toString() !== expected.value && (expected.ack === 'replica' || got !== undefined)) this.wrong.push(`${key}: ${got?.toString() ?? 'absent'}`);
      } catch (err) {
        this.note('get', key, err);
      }
    }
  }

  private note(op: string, key: string, err: unknown): void {
    if (this.errors.length < 50) this.errors.push(`${op} ${key}: ${err instanceof KvClientError ? `${err.code} ${err.message}` : String(err)}`);
  }

  /** Resolves once `count` more writes have been acknowledged. */
  async progress(count: number, timeoutMs = 60_000): Promise<void> {
    const target = this.acked.size + count;
    const deadline = Date.now() + timeoutMs;
    while (this.acked.size < target) {
      if (Date.now() > deadline) throw new Error(`${count} writes not acknowledged within ${timeoutMs} ms; errors: ${this.errors.slice(0, 5).join('; ')}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.runs);
  }
}

/** The requests `address` forwarded to other nodes, every outcome counted (kvshard_forwarded_requests_total). */
export async function forwardedBy(address: string): Promise<number> {
  return metricValue(await scrape(address), 'kvshard_forwarded_requests_total') ?? 0;
}

/** The data requests `address` answered on `route` (get, set or delete), any status. */
export async function servedBy(address: string, route: string): Promise<number> {
  return metricValue(await scrape(address), 'kvshard_http_request_duration_seconds_count', { route }) ?? 0;
}
