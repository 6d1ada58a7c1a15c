// Full resync: a replica whose data dir was wiped, or that fell behind the primary's retained log (a
// tiny log_retention_bytes forces that), receives a snapshot in chunks and then the log, and ends with
// its primary's exact data. The primary keeps serving writes during the resync.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, dataPath, request } from '../helpers/cluster.js';
import { runLoad, status, waitConverged } from '../helpers/replication.js';

let cluster: Cluster;
beforeAll(async () => {
  // 64 KiB of log: a replica that misses more than a few hundred writes needs a resync.
  cluster = await Cluster.create(1, undefined, '[replication]\nlog_retention_bytes = 65536\n');
  await cluster.startAll();
  await runLoad(16, 6_000, async (i) => {
    const res = await request(cluster.url('shard1', 'primary', dataPath('set', `seed-${i}`, `value-${i}-${'y'.repeat(i % 300)}`)));
    expect(res.status).toBe(200);
  });
  await waitConverged(cluster, 'shard1');
});
afterAll(async () => {
  await cluster?.destroy();
});

async function resyncs(): Promise<number> {
  return (await status(cluster, 'shard1', 'primary'))['replication']['resyncs'];
}

describe('full resync', () => {
  it('rebuilds a replica whose data dir was wiped while writes continue', async () => {
    const before = await resyncs();
    await cluster.kill('shard1', 'replica');
    rmSync(join(cluster.dataDir, 'shard1-b'), { recursive: true, force: true });
    await cluster.start('shard1', 'replica');
    await runLoad(8, 1_000, async (i) => {
      expect((await request(cluster.url('shard1', 'primary', dataPath('set', `during-${i}`, `d${i}`)))).status).toBe(200);
    });
    const result = await waitConverged(cluster, 'shard1');
    expect(result.keys).toBe(7_000);
    expect(await resyncs()).toBeGreaterThan(before);
    const res = await request(cluster.url('shard1', 'replica', dataPath('get', 'seed-5999')));
    expect(res.headers.get('x-kv-role')).toBe('replica');
    expect(res.text()).toBe(`value-5999-${'y'.repeat(5999 % 300)}`);
  });

  it('resyncs a replica that fell behind the trimmed log', async () => {
    const before = await resyncs();
    expect(await cluster.stop('shard1', 'replica')).toBe(0);
    await runLoad(8, 2_000, async (i) => {
      expect((await request(cluster.url('shard1', 'primary', dataPath('set', `behind-${i}`, `b${i}`)))).status).toBe(200);
    });
    // Retention is enforced right behind the writes; give the last trim a moment to commit.
    let primary = await status(cluster, 'shard1', 'primary');
    for (let i = 0; i < 50 && primary['log']['bytes'] > 65_536; i++) {
      await new Promise((r) => setTimeout(r, 20));
      primary = await status(cluster, 'shard1', 'primary');
    }
    expect(primary['log']['bytes']).toBeLessThanOrEqual(65_536);
    expect(primary['log']['first_seq']).toBeGreaterThan(primary['replication']['applied_seq'] + 1);
    await cluster.start('shard1', 'replica');
    const result = await waitConverged(cluster, 'shard1');
    expect(result.keys).toBe(9_000);
    expect(await resyncs()).toBe(before + 1);
  });
});
