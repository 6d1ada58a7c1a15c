// Helpers for replication tests: bounded concurrent load, and waiting until a replica has converged to
// its primary (no lag, equal slot-range digests).

import { compareReplica, type Comparison } from '../../src/cli/admin.js';
import { type Cluster, request, testToken } from './cluster.js';

/** Runs `total` operations with `concurrency` workers; operation i gets its index and worker number. */
export async function runLoad(concurrency: number, total: number, op: (i: number, worker: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, worker) => {
      while (next < total) await op(next++, worker);
    }),
  );
}

export async function status(cluster: Cluster, shard: string, role: 'primary' | 'replica'): Promise<Record<string, any>> {
  return (await request(cluster.url(shard, role, '/status'))).json();
}

/**
 * Waits (bounded) until the replica of `shard` has applied everything its primary committed and their
 * digests are equal. Throws with both statuses when that does not happen in time.
 */
export async function waitConverged(cluster: Cluster, shard: string, timeoutMs = 30_000): Promise<Extract<Comparison, { equal: true }>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    const primary = await status(cluster, shard, 'primary');
    const replica = await status(cluster, shard, 'replica').catch(() => undefined);
    last = { primary, replica };
    if (replica?.['in_sync'] && primary['replication']['lag_entries'] === 0 && replica['applied_seq'] === primary['last_seq']) {
      const comparison = await compareReplica(cluster.address(shard, 'primary'), cluster.address(shard, 'replica'), testToken);
      if (comparison.equal) return comparison;
      last = { primary, replica, comparison };
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`replica of ${shard} did not converge within ${timeoutMs} ms: ${JSON.stringify(last)}`);
}
