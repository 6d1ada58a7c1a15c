// A primary whose data dir is gone must not wipe its replica. Started on a new data dir, it asks the
// replica what it holds and copies it (a resync in the other direction) before it serves or pushes, so
// every write the replica had is readable afterwards at both. While the replica does not answer, the
// primary's shard gets 503 instead of a guess: epoch_unconfirmed for writes (a new data dir does not
// know whether a failover made the other member primary), primary_recovering for reads. Wiping both
// data dirs still gives an empty shard.
import { existsSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { dataPath, request, useCluster } from '../helpers/cluster.js';
import { runLoad, status, waitConverged } from '../helpers/replication.js';

const written = new Map<string, string>();

const cluster = useCluster(1);
beforeAll(async () => {
  await runLoad(8, 600, async (i) => {
    const key = `kept-${i}`;
    const value = `value-${i}-${'z'.repeat(i % 50)}`;
    const res = await request(cluster().url('shard1', 'primary', dataPath('set', key, value)));
    expect(res.status).toBe(200);
    written.set(key, value);
  });
  await waitConverged(cluster(), 'shard1');
});

const primaryDir = () => join(cluster().dataDir, 'shard1-a');

async function expectAllAt(role: 'primary' | 'replica'): Promise<void> {
  for (const [key, value] of written) {
    const res = await request(cluster().url('shard1', role, dataPath('get', key)));
    expect(res.status, `${key} at the ${role}`).toBe(200);
    expect(res.text()).toBe(value);
  }
}

describe('a primary started on an empty data dir', () => {
  it('rebuilds from its replica instead of wiping it, and replication goes on', async () => {
    const replicaBefore = await status(cluster(), 'shard1', 'replica');
    expect(await cluster().stop('shard1', 'primary')).toBe(0);
    renameSync(primaryDir(), `${primaryDir()}.moved-away`);
    const replicaLog = cluster().output('shard1', 'replica').length;

    await cluster().start('shard1', 'primary');
    const primary = await status(cluster(), 'shard1', 'primary');
    expect(primary['keys']).toBe(written.size);
    expect(primary['dataset_id']).toBe(replicaBefore['dataset_id']);
    expect(primary['last_seq']).toBe(replicaBefore['applied_seq']);
    expect(cluster().output('shard1', 'primary')).toMatch(/rebuilt from the replica: 600 keys, continuing dataset \S+ at seq \d+; serving/);
    await expectAllAt('primary');
    await expectAllAt('replica');

    // The replica went on from where it stood: no resync, nothing emptied.
    const more = await request(cluster().url('shard1', 'primary', dataPath('set', 'after-rebuild', 'new')));
    expect(more.status).toBe(200);
    written.set('after-rebuild', 'new');
    await waitConverged(cluster(), 'shard1');
    const replicaAfter = await status(cluster(), 'shard1', 'replica');
    expect(replicaAfter['resyncs']).toBe(replicaBefore['resyncs']);
    expect(replicaAfter['keys']).toBe(written.size);
    expect(cluster().output('shard1', 'replica').slice(replicaLog)).not.toMatch(/full resync/);
  });

  it('answers 503 while the replica is down, then rebuilds once it is up', async () => {
    await cluster().stop('shard1', 'replica');
    await cluster().stop('shard1', 'primary');
    rmSync(primaryDir(), { recursive: true, force: true });

    await cluster().start('shard1', 'primary', undefined, { ready: false });
    for (const [path, error] of [
      [dataPath('set', 'during', 'x'), 'epoch_unconfirmed'],
      [dataPath('delete', 'kept-1'), 'epoch_unconfirmed'],
      [dataPath('get', 'kept-1'), 'primary_recovering'],
    ] as const) {
      const res = await request(cluster().url('shard1', 'primary', path));
      expect(res.status).toBe(503);
      expect(res.json()).toMatchObject({ error, shard: 'shard1', retriable: true });
    }
    const waiting = await status(cluster(), 'shard1', 'primary');
    expect(waiting['epochs_confirmed']).toBe(false);
    expect(waiting['epochs_known']).toBe(false);
    expect(waiting['keys']).toBe(0);

    await cluster().start('shard1', 'replica');
    await cluster().waitServing('shard1');
    await expectAllAt('primary');
    await expectAllAt('replica');
    expect((await request(cluster().url('shard1', 'primary', dataPath('get', 'during')))).status).toBe(404);
  });

  it('starts an empty shard when both data dirs were wiped', async () => {
    await cluster().stop('shard1', 'primary');
    await cluster().stop('shard1', 'replica');
    rmSync(primaryDir(), { recursive: true, force: true });
    rmSync(join(cluster().dataDir, 'shard1-b'), { recursive: true, force: true });
    await Promise.all([cluster().start('shard1', 'primary'), cluster().start('shard1', 'replica')]);
    expect((await status(cluster(), 'shard1', 'primary'))['keys']).toBe(0);
    expect((await request(cluster().url('shard1', 'primary', dataPath('get', 'kept-1')))).status).toBe(404);
    expect((await request(cluster().url('shard1', 'primary', dataPath('set', 'fresh', 'start')))).status).toBe(200);
    await waitConverged(cluster(), 'shard1');
    expect(existsSync(`${primaryDir()}.moved-away`)).toBe(true);
  });
});
