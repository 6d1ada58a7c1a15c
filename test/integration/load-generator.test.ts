// The benchmark's load generators against a real node: they must send the requests the scenario names
// (GETs in rotation, SETs of new keys; the bulk loader also with the right value) and count every
// non-2xx answer, or the benchmark's table and its "does not count" verdict would be wrong.
import { beforeAll, describe, expect, it } from 'vitest';
import { bulkKey, detectTool, runBulk, runLoad, type RequestMix, type Tool } from '../../src/bench/load-generator.js';
import { dataPath, request, useCluster } from '../helpers/cluster.js';

const cluster = useCluster(1, { replicas: false });
let base: string;
beforeAll(async () => {
  base = `http://${cluster().address('shard1', 'primary')}`;
  for (let i = 0; i < 10; i++) expect((await request(`${base}${dataPath('set', `present${i}`, 'v')}`)).status).toBe(200);
});

const keyCount = async () => (await request(`${base}/status`)).json().keys as number;
const value = 'x'.repeat(100);
const tools: Tool[] = ['autocannon', ...((await detectTool()) === 'wrk' ? (['wrk'] as const) : [])];

describe.each(tools)('load generator %s', (tool) => {
  it('counts the 404s of GETs for missing keys as non-2xx, and none for present keys', async () => {
    const present = Array.from({ length: 10 }, (_, i) => dataPath('get', `present${i}`));
    const mixed: RequestMix = { gets: [...present, dataPath('get', 'missing')], setEvery: 0, setPrefixes: [''], setValue: '', setExtra: '' };
    const bad = await runLoad(tool, { baseUrl: base, mix: mixed, durationS: 1, connections: 4 });
    expect(bad.requestsPerSec).toBeGreaterThan(0);
    expect(bad.non2xx).toBeGreaterThan(0);
    expect(bad.errors).toBe(0);

    const good = await runLoad(tool, { baseUrl: base, mix: { ...mixed, gets: present }, durationS: 1, connections: 4 });
    expect(good.requestsPerSec).toBeGreaterThan(0);
    expect(Number.isSafeInteger(good.requests) && good.requests > 0).toBe(true);
    expect(good.non2xx).toBe(0);
    expect(good.p99Ms).toBeGreaterThanOrEqual(good.p50Ms);
  });

  it('writes a new key on every setEvery-th request', async () => {
    const before = await keyCount();
    const mix: RequestMix = { gets: [dataPath('get', 'present0')], setEvery: 2, setPrefixes: ['%7Btag%7D'], setValue: value, setExtra: '' };
    const result = await runLoad(tool, { baseUrl: base, mix, durationS: 1, connections: 4 });
    expect(result.non2xx).toBe(0);
    const added = (await keyCount()) - before;
    // Every second request was a SET of a key never written before, so the requests the tool counts (the
    // number the benchmark divides the server's CPU time by) match the keys added: half of them, give
    // or take the SETs still in flight on each connection when the run stopped.
    expect(added).toBeGreaterThan(10);
    expect(added).toBeGreaterThanOrEqual(Math.floor(result.requests / 2) - 1);
    expect(added).toBeLessThanOrEqual(Math.ceil(result.requests / 2) + 4);
  });
});

describe('bulk loader', () => {
  it('writes exactly the keys it reports, with the value given', async () => {
    const before = await keyCount();
    const prefixes = ['%7Ba%7D', '%7Bb%7D'];
    const result = await runBulk({ baseUrl: base, prefixes, value, count: 500, connections: 8 });
    expect(result.non2xx).toBe(0);
    expect(result.errors).toBe(0);
    expect((await keyCount()) - before).toBe(500);
    for (const n of [0, 1, 250, 499]) {
      const res = await request(`${base}/get?key=${bulkKey(prefixes, n)}`);
      expect(res.status).toBe(200);
      expect(res.text()).toBe(value);
    }
    expect((await request(`${base}/get?key=${bulkKey(prefixes, 500)}`)).status).toBe(404);
  });
});
