// Online resize, growing 3 -> 4 shards: 8,000 keys, 8 writers that keep writing, overwriting and
// deleting through the restart, and reads sampled from every node while the keys move.
import { afterAll, expect, it } from 'vitest';
import { Cluster } from '../helpers/cluster.js';
import { finishResize, Sampler, slowMigration, startLoaded, verifyResize } from '../helpers/resize.js';

const keyCount = 8_000;
let cluster: Cluster | undefined;
afterAll(async () => {
  await cluster?.destroy();
});

it('moves 25.0% of the slots to the new shard with nothing lost, while serving', async () => {
  cluster = await Cluster.create(3, undefined, slowMigration(40));
  const { before, workload } = await startLoaded(cluster, keyCount);
  await new Promise((r) => setTimeout(r, 500));

  await cluster.stopAll();
  cluster.reconfigure([...before, await Cluster.extraShard(3)]);
  const sampler = new Sampler(cluster, keyCount);
  await cluster.startAll();
  const statuses = await finishResize(cluster, workload, sampler);

  console.log(
    `grow: ${workload.acknowledged} writes acknowledged (${workload.retries} retries), ${sampler.ok} reads right, ` +
      `${sampler.unavailable} unavailable, ${sampler.wrong.length} wrong; shard4: ${JSON.stringify(statuses[3]!['migration'])}`,
  );
  expect(sampler.wrong).toEqual([]);
  expect(sampler.ok).toBeGreaterThan(100);
  expect(workload.acknowledged).toBeGreaterThan(100);
  const newShard = statuses.find((s) => s['shard'] === 'shard4')!;
  expect(newShard['migration']['keys_received']).toBeGreaterThan(keyCount * 0.2);
  await verifyResize(cluster, before, keyCount, workload);
}, 240_000);
