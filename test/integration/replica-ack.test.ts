// ack=replica: the write is answered only once the replica has applied it, so a read at the replica
// right after sees it. With the replica known to be down the write answers 503 replica_unavailable at
// once; with a replica that accepts connections but does not answer, 504 replica_timeout after its
// bound. Either way the write is committed on the primary and reaches the replica once it is back.
import { beforeAll, describe, expect, it } from 'vitest';
import { dataPath, keyOwnedBy, request, waitFor, useCluster } from '../helpers/cluster.js';
import { status, waitConverged } from '../helpers/replication.js';

const cluster = useCluster(2);
beforeAll(async () => {
  await waitConverged(cluster(), 'shard1');
  await waitConverged(cluster(), 'shard2');
});

describe('ack=replica', () => {
  it('answers after the replica serves the value, also when forwarded', async () => {
    for (let i = 0; i < 50; i++) {
      const key = keyOwnedBy('shard2', 2, `ack-${i}-`);
      const via = i % 2 === 0 ? 'shard1' : 'shard2';
      const set = await request(cluster().url(via, 'primary', dataPath('set', key, `value-${i}`, '&ack=replica')));
      expect(set.status).toBe(200);
      expect(set.json()).toMatchObject({ shard: 'shard2', ack: 'replica' });
      const read = await request(cluster().url('shard2', 'replica', dataPath('get', key)));
      expect(read.headers.get('x-kv-role')).toBe('replica');
      expect(read.text()).toBe(`value-${i}`);
      const del = await request(cluster().url(via, 'primary', dataPath('delete', key, undefined, '&ack=replica')));
      expect(del.json()).toMatchObject({ deleted: true });
      expect((await request(cluster().url('shard2', 'replica', dataPath('get', key)))).status).toBe(404);
    }
  });

  it('rejects an unknown ack mode', async () => {
    const res = await request(cluster().url('shard1', 'primary', dataPath('set', 'k', 'v', '&ack=all')));
    expect(res.status).toBe(400);
  });

  it('answers 503 replica_unavailable at once when the primary knows the replica is down, keeping the write', async () => {
    await cluster().kill('shard1', 'replica');
    await waitFor(
      'the primary finding its replica unreachable',
      async () => (await status(cluster(), 'shard1', 'primary'))['replication']['state'] === 'unreachable',
    );
    const key = keyOwnedBy('shard1', 2, 'ack-down-');
    const res = await request(cluster().url('shard1', 'primary', dataPath('set', key, 'kept', '&ack=replica')));
    expect(res.status).toBe(503);
    expect(res.json()).toMatchObject({ error: 'replica_unavailable', committed_on_primary: true });
    expect(res.json().message).toMatch(/committed and durable on the primary/);
    expect((await request(cluster().url('shard1', 'primary', dataPath('get', key)))).text()).toBe('kept');
    await cluster().start('shard1', 'replica');
    await waitConverged(cluster(), 'shard1');
    expect((await request(cluster().url('shard1', 'replica', dataPath('get', key)))).text()).toBe('kept');
  });

  it('answers 504 replica_timeout when the replica does not answer within the bound, keeping the write', async () => {
    cluster().suspend('shard1', 'replica');
    try {
      const key = keyOwnedBy('shard1', 2, 'ack-stopped-');
      const res = await request(cluster().url('shard1', 'primary', dataPath('set', key, 'kept', '&ack=replica')));
      expect(res.status).toBe(504);
      expect(res.json()).toMatchObject({ error: 'replica_timeout', committed_on_primary: true });
      expect((await request(cluster().url('shard1', 'primary', dataPath('get', key)))).text()).toBe('kept');
      cluster().resume('shard1', 'replica');
      await waitConverged(cluster(), 'shard1');
      expect((await request(cluster().url('shard1', 'replica', dataPath('get', key)))).text()).toBe('kept');
    } finally {
      cluster().resume('shard1', 'replica');
    }
  });
});
