// Internal replication endpoints are not for clients: without the cluster token (or with a wrong one)
// they answer 401 and change nothing on the replica.
import { pack } from 'msgpackr';
import { beforeAll, describe, expect, it } from 'vitest';
import { compareReplica } from '../../src/cli/admin.js';
import { dataPath, request, testToken, useCluster } from '../helpers/cluster.js';
import { status, waitConverged } from '../helpers/replication.js';

const cluster = useCluster(1);
beforeAll(async () => {
  for (let i = 0; i < 20; i++) await request(cluster().url('shard1', 'primary', dataPath('set', `auth-${i}`, 'original')));
  await waitConverged(cluster(), 'shard1');
});

describe('internal endpoint authentication', () => {
  it('refuses replication and resync messages without the right token', async () => {
    const replica = await status(cluster(), 'shard1', 'replica');
    const forged = pack({
      datasetId: replica['dataset_id'],
      primarySeq: replica['applied_seq'] + 1,
      sentAt: Date.now(),
      entries: [{ seq: replica['applied_seq'] + 1, type: 'set', slot: 0, key: Buffer.from('auth-0'), value: Buffer.from('forged'), ts: Date.now() }],
    });
    const wipe = pack({ phase: 'begin', resyncId: 'forged-resync' });
    const wrongHeaders: Record<string, string>[] = [{}, { 'x-kv-token': 'wrong-token-wrong-token' }, { 'x-kv-token': testToken.slice(0, -1) }];
    for (const headers of wrongHeaders) {
      for (const [path, body] of [
        ['/internal/replicate', forged],
        ['/internal/resync', wipe],
      ] as const) {
        const res = await request(cluster().url('shard1', 'replica', path), { method: 'POST', body: new Uint8Array(body), headers });
        expect(res.status).toBe(401);
        expect(res.json()).toMatchObject({ error: 'unauthorized' });
      }
      const digest = await request(cluster().url('shard1', 'replica', '/internal/digest'), { headers });
      expect(digest.status).toBe(401);
    }
    const after = await status(cluster(), 'shard1', 'replica');
    expect(after['applied_seq']).toBe(replica['applied_seq']);
    expect(after['keys']).toBe(20);
    expect((await request(cluster().url('shard1', 'replica', dataPath('get', 'auth-0')))).text()).toBe('original');
    expect(await compareReplica(cluster().address('shard1', 'primary'), cluster().address('shard1', 'replica'), testToken)).toEqual({ equal: true, keys: 20 });
  });

  it('rejects malformed replication messages even with the token', async () => {
    const headers = { 'x-kv-token': testToken };
    const garbage = await request(cluster().url('shard1', 'replica', '/internal/replicate'), { method: 'POST', body: 'not msgpack', headers });
    expect(garbage.status).toBe(400);
    const gapped = pack({
      primary: cluster().address('shard1', 'primary'),
      datasetId: 'x',
      primarySeq: 5,
      sentAt: 0,
      layoutId: 't',
      migrating: false,
      epoch: { epoch: 1, primary: cluster().address('shard1', 'primary'), kind: 'initial', at: null },
      entries: [
        { seq: 1, type: 'delete', slot: 0, key: Buffer.from('a'), ts: 0 },
        { seq: 3, type: 'delete', slot: 0, key: Buffer.from('b'), ts: 0 },
      ],
    });
    const res = await request(cluster().url('shard1', 'replica', '/internal/replicate'), { method: 'POST', body: new Uint8Array(gapped), headers });
    expect(res.status).toBe(400);
    expect(res.json().message).toMatch(/not contiguous/);
  });

  it('with the token, takes data only from the primary its own config names', async () => {
    const headers = { 'x-kv-token': testToken };
    const replica = await status(cluster(), 'shard1', 'replica');
    const stray = '127.0.0.1:1';
    const forged = pack({
      primary: stray,
      datasetId: replica['dataset_id'],
      forkedFrom: null,
      primarySeq: replica['applied_seq'] + 1,
      sentAt: Date.now(),
      layoutId: replica['layout_id'],
      migrating: false,
      epoch: { epoch: 1, primary: stray, kind: 'initial', at: null },
      entries: [{ seq: replica['applied_seq'] + 1, type: 'set', slot: 0, key: Buffer.from('auth-0'), value: Buffer.from('forged'), ts: Date.now() }],
    });
    const replicate = await request(cluster().url('shard1', 'replica', '/internal/replicate'), { method: 'POST', body: new Uint8Array(forged), headers });
    expect(replicate.status).toBe(409);
    expect(replicate.json()).toMatchObject({ error: 'not_my_primary' });
    const snapshot = await request(cluster().url('shard1', 'replica', '/internal/snapshot'), {
      method: 'POST',
      body: new Uint8Array(pack({ primary: stray, phase: 'begin', epoch: { epoch: 1, primary: stray, kind: 'initial', at: null } })),
      headers,
    });
    expect(snapshot.status).toBe(409);
    const state = await request(cluster().url('shard1', 'replica', `/internal/replica-state?primary=${encodeURIComponent(stray)}`), { headers });
    expect(state.status).toBe(409);
    expect((await request(cluster().url('shard1', 'replica', dataPath('get', 'auth-0')))).text()).toBe('original');
    expect((await status(cluster(), 'shard1', 'replica'))['applied_seq']).toBe(replica['applied_seq']);
  });
});
