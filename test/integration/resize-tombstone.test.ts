// During a migration, writes go to the new owner at once. A delete or an overwrite there of a key whose
// old value has not arrived yet must win over that old value when its batch arrives later.
import { afterAll, expect, it } from 'vitest';
import { Cluster, dataPath, ownerOf, request } from '../helpers/cluster.js';
import { status } from '../helpers/replication.js';
import { waitMigrated } from '../helpers/resize.js';
import { keySlot } from '../../src/core/slots.js';

let cluster: Cluster | undefined;
afterAll(async () => {
  await cluster?.destroy();
});

it('keeps deletes and overwrites made at the new owner before the old value arrives', async () => {
  // One key per batch with long pauses: the last moving keys arrive seconds after the restart.
  cluster = await Cluster.create(3, undefined, '[migration]\nbatch_keys = 1\nbatch_pause_ms = 300\n');
  await cluster.startAll();
  const keys = Array.from({ length: 200 }, (_, i) => `tomb-${i}`);
  for (const key of keys) expect((await request(cluster.url(ownerOf(key, 3), 'primary', dataPath('set', key, `old-${key}`)))).status).toBe(200);
  // Moving keys from shard1, in the order shard1 sends them (by slot): the last two are sent last.
  const moving = keys.filter((k) => ownerOf(k, 3) === 'shard1' && ownerOf(k, 4) === 'shard4').sort((a, b) => keySlot(Buffer.from(a)) - keySlot(Buffer.from(b)));
  expect(moving.length).toBeGreaterThan(5);
  const [deleted, overwritten] = moving.slice(-2) as [string, string];

  await cluster.stopAll();
  cluster.reconfigure([...cluster.shards, await Cluster.extraShard(3)]);
  await cluster.startAll();
  // Both keys are still on shard1: shard4 answers them through it.
  expect((await request(cluster.url('shard4', 'primary', dataPath('get', deleted)))).text()).toBe(`old-${deleted}`);
  const del = await request(cluster.url('shard4', 'primary', dataPath('delete', deleted)));
  expect(del.json()).toMatchObject({ deleted: true });
  expect((await request(cluster.url('shard4', 'primary', dataPath('set', overwritten, 'new')))).status).toBe(200);
  const migration = (await status(cluster, 'shard1', 'primary'))['migration'];
  expect(migration['keys_sent']).toBeLessThan(moving.length - 2);
  expect((await request(cluster.url('shard2', 'replica', dataPath('get', deleted)))).status).toBe(404);

  await waitMigrated(cluster);
  expect((await request(cluster.url('shard4', 'primary', dataPath('get', deleted)))).status).toBe(404);
  expect((await request(cluster.url('shard4', 'primary', dataPath('get', overwritten)))).text()).toBe('new');
  expect((await request(cluster.url('shard1', 'primary', `/status`))).json()['keys']).toBe(keys.filter((k) => ownerOf(k, 4) === 'shard1').length);
}, 120_000);
