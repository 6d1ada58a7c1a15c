// kvshard/client against a real 3-shard cluster: every operation, routing that sends each request
// straight to its key's node (counted on the nodes: nothing forwarded), the same client with routing off
// (two thirds forwarded), moved answers, reads from replicas, and the errors it gives.

import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { KvClient, KvClientError } from '../../src/client/index.js';
import { freePort, keyOwnedBy, ownerOf, request, useCluster } from '../helpers/cluster.js';
import { forwardedBy, servedBy } from '../helpers/client-loop.js';

const cluster = useCluster(3);
const clients: KvClient[] = [];
afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
});

function client(options: Partial<ConstructorParameters<typeof KvClient>[0]> = {}): KvClient {
  const c = new KvClient({ endpoints: [cluster().address('shard1')], ...options });
  clients.push(c);
  return c;
}

const sum = async (f: (address: string) => Promise<number>) => {
  let total = 0;
  for (const [shard, role] of cluster().nodes()) total += await f(cluster().address(shard, role));
  return total;
};

describe('KvClient', () => {
  it('sets, gets, deletes and reads many, with text and binary values', async () => {
    const c = client();
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const written = await c.set('bin', bytes);
    expect(written).toMatchObject({ key: 'bin', seq: expect.any(Number), slot: expect.any(Number), shard: expect.stringMatching(/^shard[123]$/) });
    expect(await c.get('bin')).toEqual(bytes);
    await c.set('ünï {tag} &=?', 'välue with spaces & symbols', { ack: 'replica' });
    expect((await c.get('ünï {tag} &=?'))?.toString()).toBe('välue with spaces & symbols');
    expect(await c.get('never-written')).toBeUndefined();
    expect(await c.delete('bin')).toMatchObject({ key: 'bin', deleted: true });
    expect(await c.delete('bin')).toMatchObject({ deleted: false });
    expect(await c.get('bin')).toBeUndefined();
    const keys = Array.from({ length: 60 }, (_, i) => `many-${i}`);
    for (const key of keys.slice(0, 40)) await c.set(key, `v-${key}`);
    const values = await c.getMany(keys);
    expect(values.map((v) => v?.toString())).toEqual(keys.map((k, i) => (i < 40 ? `v-${k}` : undefined)));
  });

  it('sends each request to its key owner: nothing is forwarded; with routing off, two thirds are', async () => {
    const routed = client();
    await routed.cluster();
    const forwardedBefore = await sum(forwardedBy);
    const setsBefore = await sum((a) => servedBy(a, 'set'));
    const keys = Array.from({ length: 300 }, (_, i) => `route-${i}`);
    for (const key of keys) await routed.set(key, key);
    expect((await routed.getMany(keys)).map(String)).toEqual(keys);
    expect(await sum(forwardedBy)).toBe(forwardedBefore);
    // Each set was answered by exactly one node: the key's primary.
    expect((await sum((a) => servedBy(a, 'set'))) - setsBefore).toBe(keys.length);

    const oneNode = client({ routing: false });
    for (const key of keys) await oneNode.set(key, `again-${key}`);
    const forwarded = (await sum(forwardedBy)) - forwardedBefore;
    // shard1's primary forwards every key it does not own.
    const owned = keys.filter((k) => ownerOf(k, 3) === 'shard1').length;
    expect(owned).toBeGreaterThan(0);
    expect(forwarded).toBe(keys.length - owned);
  });
});

describe('KvClient reads, moves and errors', () => {
  it('reads from replicas, or from both members in turn', async () => {
    const c = client();
    for (let i = 0; i < 30; i++) await c.set(`r-${i}`, `v${i}`, { ack: 'replica' });
    const replicaGetsBefore = await Promise.all(cluster().shards.map((s) => servedBy(s.replica, 'get')));
    const fromReplica = client({ readFrom: 'replica' });
    for (let i = 0; i < 30; i++) expect((await fromReplica.get(`r-${i}`))?.toString()).toBe(`v${i}`);
    const replicaGetsAfter = await Promise.all(cluster().shards.map((s) => servedBy(s.replica, 'get')));
    expect(replicaGetsAfter.reduce((a, b) => a + b) - replicaGetsBefore.reduce((a, b) => a + b)).toBe(30);
    const either = client({ readFrom: 'any' });
    expect((await either.getMany(Array.from({ length: 30 }, (_, i) => `r-${i}`))).map(String)).toEqual(Array.from({ length: 30 }, (_, i) => `v${i}`));
    // Writes still go to the primary.
    expect(await fromReplica.set('r-write', 'x')).toMatchObject({ key: 'r-write' });
  });

  it('answers a request carrying the map header at the wrong node with 421 moved, and without it forwards', async () => {
    const key = keyOwnedBy('shard2', 3, 'mv');
    const map = await client().cluster();
    const shard2 = map.shards[1]!;
    const wrongNode = cluster().address('shard1');
    const moved = await request(`http://${wrongNode}/set?key=${key}&value=x`, { headers: { 'x-kv-map': `${map.layout_id} 1` } });
    expect(moved.status).toBe(421);
    expect(moved.json()).toMatchObject({
      error: 'moved',
      shard: 'shard2',
      address: shard2.primary,
      primary: shard2.primary,
      replica: shard2.replica,
      epoch: 1,
    });
    const atReplica = await request(`http://${shard2.replica}/set?key=${key}&value=x`, { headers: { 'x-kv-map': `${map.layout_id} 1` } });
    expect(atReplica.status).toBe(421);
    expect(atReplica.json()).toMatchObject({ error: 'moved', address: shard2.primary });
    const forwarded = await request(`http://${wrongNode}/set?key=${key}&value=y`);
    expect(forwarded.status).toBe(200);
    const bad = await request(`http://${wrongNode}/get?key=${key}`, { headers: { 'x-kv-map': 'not a map' } });
    expect(bad.status).toBe(400);
    expect(bad.json().error).toBe('bad_request');
  });

  it('serves the map on every node, versioned, and refuses other methods', async () => {
    for (const [shard, role] of cluster().nodes()) {
      const res = await request(cluster().url(shard, role, '/cluster'));
      expect(res.status).toBe(200);
      const map = res.json();
      expect(map).toMatchObject({
        version: 1,
        slots: 16384,
        slot_assignment: 'jump',
        migration: null,
        node: { shard, address: cluster().address(shard, role) },
      });
      expect(map.shards.map((s: { name: string }) => s.name)).toEqual(['shard1', 'shard2', 'shard3']);
    }
    expect((await request(cluster().url('shard1', 'primary', '/cluster'), { method: 'POST' })).status).toBe(405);
  });

  it('gives typed errors: bad keys before sending, unavailable when no node answers, aborted calls', async () => {
    const c = client();
    await expect(c.get('')).rejects.toMatchObject({ code: 'bad_request' });
    await expect(c.set('k'.repeat(1025), 'x')).rejects.toMatchObject({ code: 'bad_request' });
    await expect(c.get('\ud800')).rejects.toBeInstanceOf(KvClientError);
    const gone = new KvClient({ endpoints: [`127.0.0.1:${await freePort()}`], timeoutMs: 1500, retries: 3 });
    clients.push(gone);
    await expect(gone.get('a')).rejects.toMatchObject({ code: 'unavailable' });
    const aborted = new AbortController();
    aborted.abort();
    await expect(c.get('a', { signal: aborted.signal })).rejects.toMatchObject({ code: 'aborted' });
  });
});

describe('KvClient retries and packaging', () => {
  it('never retries a write the primary committed (replica_timeout), and gives the server code', async () => {
    const c = client({ timeoutMs: 20_000 });
    const key = keyOwnedBy('shard1', 3, 'committed');
    const primary = cluster().address('shard1');
    const before = await servedBy(primary, 'set');
    cluster().suspend('shard1', 'replica');
    try {
      const err = await c.set(key, 'x', { ack: 'replica' }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(KvClientError);
      expect(err).toMatchObject({ code: expect.stringMatching(/^replica_(timeout|unavailable)$/), committed: true });
    } finally {
      cluster().resume('shard1', 'replica');
    }
    expect((await servedBy(primary, 'set')) - before).toBe(1);
    expect((await c.get(key))?.toString()).toBe('x');
  });

  it('ends a call at its deadline when the node stops answering', async () => {
    const c = client({ timeoutMs: 1000 });
    const key = keyOwnedBy('shard2', 3, 'deadline');
    await c.set(key, 'x');
    cluster().suspend('shard2', 'primary');
    const started = Date.now();
    try {
      await expect(c.get(key)).rejects.toMatchObject({ code: 'timeout' });
    } finally {
      cluster().resume('shard2', 'primary');
    }
    // The deadline, not a retry after it (undici's timers tick coarsely: a generous bound).
    expect(Date.now() - started).toBeLessThan(10_000);
    expect((await c.get(key))?.toString()).toBe('x');
  });

  it('is importable as kvshard/client from the built package, with its types', () => {
    const root = resolve(import.meta.dirname, '..', '..');
    const out = execFileSync(
      process.execPath,
      ['--input-type=module', '-e', "import('kvshard/client').then((m) => console.log(typeof m.KvClient, typeof m.KvClientError))"],
      {
        cwd: root,
        encoding: 'utf8',
        timeout: 30_000,
      },
    );
    expect(out.trim()).toBe('function function');
    const pkg = JSON.parse(
      execFileSync(process.execPath, ['-p', "JSON.stringify(require('./package.json').exports['./client'])"], { cwd: root, encoding: 'utf8' }),
    );
    expect(pkg.types).toBe('./dist/client/index.d.ts');
  });
});
