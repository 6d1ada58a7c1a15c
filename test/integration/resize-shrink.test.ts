// Online resize, shrinking 4 -> 3 shards: the removed shard runs `kvshard drain` until its keys live on
// the remaining shards, then retires its data dirs; writers and sampled reads run throughout.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { Cluster } from '../helpers/cluster.js';
import { finishResize, Sampler, slowMigration, startLoaded, verifyResize } from '../helpers/resize.js';

const keyCount = 8_000;
let cluster: Cluster | undefined;
afterAll(async () => {
  await cluster?.destroy();
});

it('drains the removed shard into the other three with nothing lost, while serving', async () => {
  cluster = await Cluster.create(4, undefined, slowMigration(40));
  const { before, workload } = await startLoaded(cluster, keyCount);
  await new Promise((r) => setTimeout(r, 500));

  await cluster.stopAll();
  cluster.reconfigure(before.slice(0, 3));
  const sampler = new Sampler(cluster, keyCount);
  const drained = cluster.startDrain('shard4');
  await cluster.startAll();
  expect(await drained).toBe(0);
  const statuses = await finishResize(cluster, workload, sampler);

  console.log(
    `shrink: ${workload.acknowledged} writes acknowledged (${workload.retries} retries), ${sampler.ok} reads right, ` +
      `${sampler.unavailable} unavailable, ${sampler.wrong.length} wrong; received: ${statuses.map((s) => s['migration']['keys_received']).join(', ')}`,
  );
  expect(sampler.wrong).toEqual([]);
  expect(sampler.ok).toBeGreaterThan(100);
  expect(workload.acknowledged).toBeGreaterThan(100);
  // The drained shard's data dirs were moved aside, not deleted, and no node of it runs.
  expect(existsSync(join(cluster.dataDir, 'shard4-a'))).toBe(false);
  const retired = readdirSync(join(cluster.dataDir, 'retired'));
  expect(retired).toHaveLength(1);
  expect(readdirSync(join(cluster.dataDir, 'retired', retired[0]!)).sort()).toEqual(['shard4-a', 'shard4-b']);
  await verifyResize(cluster, before, keyCount, workload);
}, 240_000);
