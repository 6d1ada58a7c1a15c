// ack=replica: the write is answered only once the replica has applied it, so a read at the replica
// right after sees it. With the replica down the write answers 504 replica_timeout after its bound, and
// the write is still committed on the primary.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, dataPath, keyOwnedBy, request } from '../helpers/cluster.js';
import { waitConverged } from '../helpers/replication.js';

let cluster: Cluster;
beforeAll(async () => {
  cluster = await Cluster.started(2);
  await waitConverged(cluster, 'shard1');
  await waitConverged(cluster, 'shard2');
});
afterAll(async () => {
  await cluster?.destroy();
});

describe('ack=replica', () => {
  it('answers after the replica serves the value, also when forwarded', async () => {
    for (let i = 0; i < 50; i++) {
      const key = keyOwnedBy('shard2', 2, `ack-${i}-`);
      const via = i % 2 === 0 ? 'shard1' : 'shard2';
      const set = await request(cluster.url(via, 'primary', dataPath('set', key, `value-${i}`, '&ack=replica')));
      expect(set.status).toBe(200);
      expect(set.json()).toMatchObject({ shard: 'shard2', ack: 'replica' });
      const read = await request(cluster.url('shard2', 'replica', dataPath('get', key)));
      expect(read.headers.get('x-kv-role')).toBe('replica');
      expect(read.text()).toBe(`value-${i}`);
      const del = await request(cluster.url(via, 'primary', dataPath('delete', key, undefined, '&ack=replica')));
      expect(del.json()).toMatchObject({ deleted: true });
      expect((await request(cluster.url('shard2', 'replica', dataPath('get', key)))).status).toBe(404);
    }
  });

  it('rejects an unknown ack mode', async () => {
    const res = await request(cluster.url('shard1', 'primary', dataPath('set', 'k', 'v', '&ack=all')));
    expect(res.status).toBe(400);
  });

  it('answers 504 replica_timeout with the replica down, keeping the write on the primary', async () => {
    await cluster.kill('shard1', 'replica');
    const key = keyOwnedBy('shard1', 2, 'ack-down-');
    const started = Date.now();
    const res = await request(cluster.url('shard1', 'primary', dataPath('set', key, 'kept', '&ack=replica')));
    expect(res.status).toBe(504);
    expect(res.json()).toMatchObject({ error: 'replica_timeout', committed_on_primary: true });
    expect(res.json().message).toMatch(/committed and durable on the primary/);
    expect(Date.now() - started).toBeGreaterThanOrEqual(4_000);
    expect((await request(cluster.url('shard1', 'primary', dataPath('get', key)))).text()).toBe('kept');
    await cluster.start('shard1', 'replica');
    await waitConverged(cluster, 'shard1');
    expect((await request(cluster.url('shard1', 'replica', dataPath('get', key)))).text()).toBe('kept');
  });
});
