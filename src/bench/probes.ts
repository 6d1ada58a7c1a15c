// What the benchmark samples beside its load: the replication lag of write scenarios, and the memory of
// each node once loaded.

import { readFileSync } from 'node:fs';
import type { LocalCluster } from '../harness/local-cluster.js';
import type { LoadResult } from './load-generator.js';
import { httpGet } from './scenarios.js';
import { percentile } from './summary.js';

async function replicationLag(cluster: LocalCluster, shard: string): Promise<{ seconds: number; entries: number }> {
  const status = JSON.parse((await httpGet(`http://${cluster.address(shard, 'primary')}/status`)).body);
  return { seconds: status.replication.lag_seconds ?? Infinity, entries: status.replication.lag_entries ?? Infinity };
}

/** Samples replication lag every 100 ms while `load` runs, then times how long until lag is zero. */
export async function withLagSampling<T extends LoadResult>(
  cluster: LocalCluster,
  shards: readonly string[],
  load: Promise<T>,
): Promise<{ result: T; p99Ms: number; zeroAfterMs: number }> {
  const samples: number[] = [];
  let done = false;
  const sampler = (async () => {
    while (!done) {
      const lags = await Promise.all(shards.map((s) => replicationLag(cluster, s)));
      samples.push(Math.max(...lags.map((l) => l.seconds)) * 1000);
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  const result = await load;
  done = true;
  await sampler;
  const stopped = Date.now();
  let zeroAfterMs = NaN;
  while (Date.now() - stopped < 30_000) {
    const lags = await Promise.all(shards.map((s) => replicationLag(cluster, s)));
    if (lags.every((l) => l.entries === 0)) {
      zeroAfterMs = Date.now() - stopped;
      break;
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  return { result, p99Ms: percentile(samples, 99), zeroAfterMs };
}

/**
 * Resident memory of a process in MB: all of it, the private (anonymous) part, and the file-backed part,
 * which for an LMDB process is mostly the memory-mapped database (page cache the kernel can reclaim).
 */
export function rssMb(pid: number): { rss: number; peak: number; anon: number; file: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rss: kb('VmRSS') / 1024, peak: kb('VmHWM') / 1024, anon: kb('RssAnon') / 1024, file: kb('RssFile') / 1024 };
}
