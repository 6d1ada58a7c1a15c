// A three-shard cluster serves set, get and delete for keys of every shard, whichever node the client
// talks to: non-owners forward to the owner and relay its answer unchanged. Replicas serve reads and
// refuse every write.
import { describe, expect, it } from 'vitest';
import { useCluster, dataPath, keyOwnedBy, ownerOf, request } from '../helpers/cluster.js';
import { rawExchange, rawRequest } from '../helpers/raw-http.js';
import { waitConverged } from '../helpers/replication.js';

const cluster = useCluster(3);

// biome-ignore lint/complexity/noExcessiveLinesPerFunction: a describe() suite, not a function: its tests share one setup
describe('data routes', () => {
  it('sets, gets and deletes at the owner with shard and role headers', async () => {
    const key = keyOwnedBy('shard2', 3);
    const set = await request(cluster().url('shard2', 'primary', dataPath('set', key, 'v1')));
    expect(set.status).toBe(200);
    expect(set.json()).toMatchObject({ key, shard: 'shard2', bytes: 2 });

    const got = await request(cluster().url('shard2', 'primary', dataPath('get', key)));
    expect(got.status).toBe(200);
    expect(got.text()).toBe('v1');
    expect(got.headers.get('x-kv-shard')).toBe('shard2');
    expect(got.headers.get('x-kv-role')).toBe('primary');

    const del = await request(cluster().url('shard2', 'primary', dataPath('delete', key)));
    expect(del.status).toBe(200);
    expect(del.json()).toMatchObject({ key, shard: 'shard2', deleted: true });
    const again = await request(cluster().url('shard2', 'primary', dataPath('delete', key)));
    expect(again.json()).toMatchObject({ deleted: false });

    const missing = await request(cluster().url('shard2', 'primary', dataPath('get', key)));
    expect(missing.status).toBe(404);
    expect(missing.json()).toMatchObject({ error: 'not_found' });
  });

  it('forwards every operation from every other primary to the owner', async () => {
    for (const owner of ['shard1', 'shard2', 'shard3']) {
      const key = keyOwnedBy(owner, 3, `fwd-${owner}-`);
      for (const via of ['shard1', 'shard2', 'shard3'].filter((s) => s !== owner)) {
        const value = `from ${via}`;
        const set = await request(cluster().url(via, 'primary', dataPath('set', key, value)), { method: 'POST' });
        expect(set.status).toBe(200);
        expect(set.json()).toMatchObject({ key, shard: owner });
        expect(set.headers.get('x-kv-shard')).toBe(owner);

        for (const reader of ['shard1', 'shard2', 'shard3']) {
          const got = await request(cluster().url(reader, 'primary', dataPath('get', key)));
          expect(got.status).toBe(200);
          expect(got.text()).toBe(value);
          expect(got.headers.get('x-kv-shard')).toBe(owner);
          expect(got.headers.get('x-kv-role')).toBe('primary');
        }
      }
      const del = await request(cluster().url(owner === 'shard1' ? 'shard2' : 'shard1', 'primary', dataPath('delete', key)));
      expect(del.json()).toMatchObject({ deleted: true, shard: owner });
      const gone = await request(cluster().url('shard3', 'primary', dataPath('get', key)));
      expect(gone.status).toBe(404);
      expect(gone.json()).toMatchObject({ error: 'not_found', shard: owner });
    }
  });

  it('serves the keys of every shard through every replica, forwarding between replicas', async () => {
    const keys = ['shard1', 'shard2', 'shard3'].map((owner) => [owner, keyOwnedBy(owner, 3, `replica-read-${owner}-`)] as const);
    for (const [owner, key] of keys) {
      expect((await request(cluster().url(owner, 'primary', dataPath('set', key, `at ${owner}`)))).status).toBe(200);
    }
    for (const shard of ['shard1', 'shard2', 'shard3']) await waitConverged(cluster(), shard);
    for (const [owner, key] of keys) {
      for (const reader of ['shard1', 'shard2', 'shard3']) {
        const got = await request(cluster().url(reader, 'replica', dataPath('get', key)));
        expect(got.status).toBe(200);
        expect(got.text()).toBe(`at ${owner}`);
        expect(got.headers.get('x-kv-shard')).toBe(owner);
        expect(got.headers.get('x-kv-role')).toBe('replica');
      }
    }
  });

  it('rejects writes at every replica, for keys of any shard, naming the primary', async () => {
    for (const shard of ['shard1', 'shard2', 'shard3']) {
      for (const op of ['set', 'delete']) {
        const res = await request(cluster().url(shard, 'replica', dataPath(op, `k-${op}`, op === 'set' ? 'v' : undefined)));
        expect(res.status).toBe(403);
        expect(res.json()).toMatchObject({ error: 'read_only_replica', shard, primary: cluster().address(shard, 'primary') });
      }
      const post = await request(cluster().url(shard, 'replica', '/set?key=body'), { method: 'POST', body: 'x' });
      expect(post.status).toBe(403);
    }
  });

  it('stores a POST body of every byte value exactly, also when forwarded', async () => {
    const value = Buffer.alloc(256 * 40);
    for (let i = 0; i < value.length; i++) value[i] = i % 256;
    const key = keyOwnedBy('shard1', 3, 'binary-');
    const set = await request(cluster().url('shard3', 'primary', dataPath('set', key)), { method: 'POST', body: value });
    expect(set.status).toBe(200);
    expect(set.json()).toMatchObject({ shard: 'shard1', bytes: value.length });
    for (const reader of ['shard1', 'shard2']) {
      const got = await request(cluster().url(reader, 'primary', dataPath('get', key)));
      expect(got.headers.get('content-type')).toBe('application/octet-stream');
      expect(got.body.equals(value)).toBe(true);
    }
  });

  it('keeps keys and values with &, =, %, +, spaces and unicode intact through forwarding', async () => {
    const cases = ['a&b=c', 'x=y&z', '100% sure', 'plus+sign', 'sp ace', 'ключ-键-🔑', '{tag}&?#/'];
    for (const key of cases) {
      const value = `${key} -> värde & more=1 %2F`;
      const owner = ownerOf(key, 3);
      const via = owner === 'shard1' ? 'shard2' : 'shard1';
      const set = await request(cluster().url(via, 'primary', dataPath('set', key, value)));
      expect(set.status).toBe(200);
      expect(set.json()).toMatchObject({ key, shard: owner });
      const got = await request(cluster().url(via, 'primary', dataPath('get', key)));
      expect(got.text()).toBe(value);
      const atOwner = await request(cluster().url(owner, 'primary', dataPath('get', key)));
      expect(atOwner.text()).toBe(value);
    }
  });

  it('stores an empty value from an empty POST body', async () => {
    const key = 'empty-value';
    expect((await request(cluster().url('shard1', 'primary', dataPath('set', key)), { method: 'POST' })).status).toBe(200);
    const got = await request(cluster().url('shard2', 'primary', dataPath('get', key)));
    expect(got.status).toBe(200);
    expect(got.body.length).toBe(0);
  });

  it('takes a POST whose value is in its query and that has no body, also forwarded; refuses a value given both ways', async () => {
    const key = keyOwnedBy('shard2', 3, 'query-post-');
    for (const via of ['shard2', 'shard1']) {
      const value = `from ${via}: ü & = + %`;
      const set = await request(cluster().url(via, 'primary', dataPath('set', key, value)), { method: 'POST' });
      expect(set.status).toBe(200);
      expect(set.json()).toMatchObject({ key, shard: 'shard2', bytes: Buffer.byteLength(value) });
      expect((await request(cluster().url('shard3', 'primary', dataPath('get', key)))).text()).toBe(value);
    }
    // Without Content-Length or Transfer-Encoding a request has no body (as HTTP/1.1 and node's parser say).
    const bare = await rawExchange(cluster().address('shard2', 'primary'), rawRequest('POST', dataPath('set', key, 'no length')), { responses: 1 });
    expect(bare.responses.map((r) => r.status)).toEqual([200]);
    expect((await request(cluster().url('shard2', 'primary', dataPath('get', key)))).text()).toBe('no length');
    // A chunked body is read even when it turns out empty, and then the query's value counts.
    const chunked = await request(cluster().url('shard2', 'primary', dataPath('set', key, 'chunked')), {
      method: 'POST',
      body: new ReadableStream({ start: (c) => c.close() }),
      duplex: 'half',
    } as RequestInit);
    expect(chunked.status).toBe(200);
    expect((await request(cluster().url('shard2', 'primary', dataPath('get', key)))).text()).toBe('chunked');
    const both = await request(cluster().url('shard2', 'primary', dataPath('set', key, 'q')), { method: 'POST', body: 'b' });
    expect(both.status).toBe(400);
    expect(both.json()).toMatchObject({ error: 'bad_request', message: expect.stringContaining('not both') });
    expect((await request(cluster().url('shard2', 'primary', dataPath('get', key)))).text()).toBe('chunked');
  });

  it('answers /health with shard, role and address', async () => {
    for (const [shard, role] of cluster().nodes()) {
      const res = await request(cluster().url(shard, role, '/health'));
      expect(res.status).toBe(200);
      expect(res.json()).toEqual({ status: 'ok', shard, role, address: cluster().address(shard, role), pid: cluster().pid(shard, role) });
    }
  });
});
