// Test helpers: the local cluster of real processes (src/harness/local-cluster.ts), HTTP requests with timeouts,
// and routing helpers to pick keys owned by a given shard.

import { afterAll, beforeAll } from 'vitest';
import { LocalCluster, type StartOptions } from '../../src/harness/local-cluster.js';
import { jumpHash, keySlot } from '../../src/core/slots.js';

export { cliPath, configToml, freePort, layout, LocalCluster as Cluster, localToken as testToken } from '../../src/harness/local-cluster.js';
export type { RoleName, ShardLayout, StartOptions } from '../../src/harness/local-cluster.js';

/**
 * Start options for a primary whose test runs no replica: a primary with a new data dir otherwise
 * waits for its replica before it serves (see src/replication/primary-recovery.ts).
 */
export const alone: StartOptions = { args: ['--overwrite-replica'] };

export interface Reply {
  readonly status: number;
  readonly headers: Headers;
  readonly body: Buffer;
  json(): any;
  text(): string;
}

/** An HTTP request with a timeout, returning the status, headers and raw body. */
export async function request(url: string, init: RequestInit = {}): Promise<Reply> {
  const res = await fetch(url, { signal: AbortSignal.timeout(15_000), ...init });
  const body = Buffer.from(await res.arrayBuffer());
  return {
    status: res.status,
    headers: res.headers,
    body,
    json: () => JSON.parse(body.toString('utf8')),
    text: () => body.toString('utf8'),
  };
}

/** `/op?key=...&value=...` with every part percent-encoded. */
export function dataPath(op: string, key: string, value?: string, extra = ''): string {
  let path = `/${op}?key=${encodeURIComponent(key)}`;
  if (value !== undefined) path += `&value=${encodeURIComponent(value)}`;
  return path + extra;
}

/** The name of the shard that owns `key` in a cluster of `shardCount` shards named shard1..N. */
export function ownerOf(key: string, shardCount: number): string {
  return `shard${jumpHash(keySlot(Buffer.from(key, 'utf8')), shardCount) + 1}`;
}

/** Finds a key (prefix + counter) owned by `shard`, for tests that need a particular owner. */
export function keyOwnedBy(shard: string, shardCount: number, prefix = 'k'): string {
  for (let i = 0; i < 100_000; i++) {
    if (ownerOf(`${prefix}${i}`, shardCount) === shard) return `${prefix}${i}`;
  }
  throw new Error(`no key with prefix ${prefix} maps to ${shard}`);
}

export interface UseClusterOptions {
  /**
   * Start each shard's primary without its replica (`alone`), for tests about one node that need no
   * replication. Default true: primaries and replicas.
   */
  readonly replicas?: boolean;
  /** Start only the replicas, for tests that play their primary themselves. */
  readonly replicasOnly?: boolean;
  /** More top-level settings for the config (e.g. `node_timeout_ms = 1000`). */
  readonly extraToml?: string;
}

/**
 * Starts a cluster of `shardCount` shards (primaries and replicas, or primaries only) before the file's
 * tests and destroys it after them. Returns an accessor, since the cluster exists only once the hook has
 * run.
 */
export function useCluster(shardCount: number, options: UseClusterOptions = {}): () => LocalCluster {
  let cluster: LocalCluster | undefined;
  beforeAll(async () => {
    // Kept before its nodes start, so that afterAll destroys whatever started when a start fails.
    const created = await LocalCluster.create(shardCount, undefined, options.extraToml);
    cluster = created;
    if (options.replicasOnly) {
      for (const s of created.shards) await created.start(s.name, 'replica');
    } else if (options.replicas === false) {
      await Promise.all(created.shards.map((s) => created.start(s.name, 'primary', undefined, alone)));
      await created.waitLayoutDecided();
    } else {
      await created.startAll();
    }
  });
  afterAll(async () => {
    await cluster?.destroy();
  });
  return () => {
    if (!cluster) throw new Error('the cluster has not started');
    return cluster;
  };
}

/** Polls `probe` every 50 ms until it gives a value other than undefined or false, which it returns. */
export async function waitFor<T>(what: string, probe: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
