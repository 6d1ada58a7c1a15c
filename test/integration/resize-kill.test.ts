// Online resize under faults: during a 3 -> 4 migration, kill -9 a previous owner and restart it, then
// kill -9 the new owner and restart it. The migration resumes from what each side stored and completes
// with every acknowledged write in place.
import { afterAll, expect, it } from 'vitest';
import { Cluster } from '../helpers/cluster.js';
import { status } from '../helpers/replication.js';
import { finishResize, Sampler, slowMigration, startLoaded, verifyResize } from '../helpers/resize.js';

const keyCount = 8_000;
let cluster: Cluster | undefined;
afterAll(async () => {
  await cluster?.destroy();
});

/** Waits until shard4 has received `fraction` of its slots, and returns its migration status. */
async function waitReceived(c: Cluster, fraction: number): Promise<Record<string, any>> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const migration = (await status(c, 'shard4', 'primary'))['migration'];
    if (migration && migration['slots_received'] >= migration['slots_to_receive'] * fraction) return migration;
    if (Date.now() > deadline) throw new Error(`shard4 did not reach ${fraction} of its slots: ${JSON.stringify(migration)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

it('completes after kill -9 of the previous owner and then of the new owner', async () => {
  cluster = await Cluster.create(3, undefined, slowMigration(100));
  const { before, workload } = await startLoaded(cluster, keyCount);

  await cluster.stopAll();
  cluster.reconfigure([...before, await Cluster.extraShard(3)]);
  const sampler = new Sampler(cluster, keyCount);
  await cluster.startAll();

  const atFirstKill = await waitReceived(cluster, 0.2);
  const shard1Before = (await status(cluster, 'shard1', 'primary'))['migration'];
  await cluster.kill('shard1', 'primary');
  expect(atFirstKill['state']).toBe('migrating');
  expect(shard1Before['slots_sent']).toBeLessThan(shard1Before['slots_to_send']);
  await cluster.start('shard1', 'primary');

  const atSecondKill = await waitReceived(cluster, 0.6);
  await cluster.kill('shard4', 'primary');
  expect(atSecondKill['state']).toBe('migrating');
  await cluster.start('shard4', 'primary');

  const statuses = await finishResize(cluster, workload, sampler);
  console.log(
    `kill: shard1 killed at ${shard1Before['slots_sent']}/${shard1Before['slots_to_send']} slots sent, shard4 at ` +
      `${atSecondKill['slots_received']}/${atSecondKill['slots_to_receive']} received; ${workload.acknowledged} writes, ` +
      `${sampler.ok} reads right, ${sampler.unavailable} unavailable; shard4: ${JSON.stringify(statuses[3]!['migration'])}`,
  );
  expect(sampler.wrong).toEqual([]);
  await verifyResize(cluster, before, keyCount, workload);
}, 300_000);
