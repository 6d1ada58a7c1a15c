// When the owner's primary is down, a forwarding node reads the key from the owner's replica (its answer
// says so in X-Kv-Role) and answers writes 503 shard_unavailable naming the shard and address; when the
// owner hangs, 504 shard_timeout. A replica whose peer replica is down reads from that shard's primary.
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { alone, Cluster, dataPath, freePort, keyOwnedBy, request, useCluster, waitFor } from '../helpers/cluster.js';
import { waitConverged } from '../helpers/replication.js';

const cluster = useCluster(2);

describe('unreachable owners', () => {
  it('reads from the replica and refuses writes with 503 while the owner primary is down, and serves again once it is back', async () => {
    const key = keyOwnedBy('shard2', 2, 'down-');
    expect((await request(cluster().url('shard1', 'primary', dataPath('set', key, 'before')))).status).toBe(200);
    await waitConverged(cluster(), 'shard2');
    await cluster().kill('shard2', 'primary');
    const read = await request(cluster().url('shard1', 'primary', dataPath('get', key)));
    expect(read.status).toBe(200);
    expect(read.text()).toBe('before');
    expect(read.headers.get('x-kv-role')).toBe('replica');
    for (const path of [dataPath('set', key, 'x'), dataPath('delete', key)]) {
      const res = await request(cluster().url('shard1', 'primary', path));
      expect(res.status).toBe(503);
      expect(res.json()).toMatchObject({ error: 'shard_unavailable', shard: 'shard2', address: cluster().address('shard2') });
    }
    await cluster().start('shard2', 'primary');
    // shard1 probes the primary it found down, and reads from it again once it answers.
    await waitFor(
      'shard1 reading from the primary again',
      async () => (await request(cluster().url('shard1', 'primary', dataPath('get', key)))).headers.get('x-kv-role') === 'primary',
    );
    const got = await request(cluster().url('shard1', 'primary', dataPath('get', key)));
    expect(got.status).toBe(200);
    expect(got.text()).toBe('before');
  });

  it('reads from the owner primary when the owner replica is down', async () => {
    const key = keyOwnedBy('shard2', 2, 'fallback-');
    expect((await request(cluster().url('shard2', 'primary', dataPath('set', key, 'primary-copy')))).status).toBe(200);
    await cluster().kill('shard2', 'replica');
    const got = await request(cluster().url('shard1', 'replica', dataPath('get', key)));
    expect(got.status).toBe(200);
    expect(got.text()).toBe('primary-copy');
    expect(got.headers.get('x-kv-role')).toBe('primary');
    await cluster().start('shard2', 'replica');
  });

  it('answers 504 when the owner accepts connections but never answers', async () => {
    const sockets: net.Socket[] = [];
    const hang = net.createServer((socket) => sockets.push(socket));
    const hangPort = await freePort();
    await new Promise<void>((resolve) => hang.listen(hangPort, '127.0.0.1', resolve));
    const hangAddress = `127.0.0.1:${hangPort}`;
    const hanging = await Cluster.create(2, ([a, b]) => [a!, { ...b!, address: hangAddress }]);
    try {
      await hanging.start('shard1', 'primary', undefined, alone);
      const key = keyOwnedBy('shard2', 2, 'hang-');
      const res = await request(hanging.url('shard1', 'primary', dataPath('get', key)));
      expect(res.status).toBe(504);
      expect(res.json()).toMatchObject({ error: 'shard_timeout', shard: 'shard2', address: hangAddress });
    } finally {
      await hanging.destroy();
      for (const s of sockets) s.destroy();
      hang.close();
    }
  });
});
