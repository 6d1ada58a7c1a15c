// Who may read /metrics: anyone by default, only a bearer of the config's metrics.token when it sets
// one; and a node whose config turns metrics off answers 404 metrics_disabled and still serves.

import { afterAll, expect, it } from 'vitest';
import { alone, Cluster, dataPath, request, testToken } from '../helpers/cluster.js';

const metricsToken = 'metrics-secret-0123456789abcdef';
const clusters: Cluster[] = [];
afterAll(async () => {
  await Promise.all(clusters.map((c) => c.destroy()));
});

async function started(extraToml: string): Promise<Cluster> {
  const cluster = await Cluster.create(1, undefined, extraToml);
  clusters.push(cluster);
  await cluster.start('shard1', 'primary', undefined, alone);
  return cluster;
}

it('needs the metrics token when the config sets one, and only that token', async () => {
  const c = await started(`[metrics]\ntoken = "${metricsToken}"\n`);
  const url = c.url('shard1', 'primary', '/metrics');
  const without = await request(url);
  expect(without.status).toBe(401);
  expect(without.json().error).toBe('unauthorized');
  expect((await request(url, { headers: { authorization: 'Bearer wrong-token-0123456789abcdef' } })).status).toBe(401);
  // The cluster token is not the metrics token.
  expect((await request(url, { headers: { authorization: `Bearer ${testToken}` } })).status).toBe(401);
  const ok = await request(url, { headers: { authorization: `Bearer ${metricsToken}` } });
  expect(ok.status).toBe(200);
  expect(ok.headers.get('content-type')).toContain('text/plain');
  expect(ok.text()).toContain('kvshard_build_info');
  // /health stays open.
  expect((await request(c.url('shard1', 'primary', '/health'))).status).toBe(200);
});

it('answers 404 metrics_disabled with metrics off, and serves data all the same', async () => {
  const c = await started('[metrics]\nenabled = false\n');
  const res = await request(c.url('shard1', 'primary', '/metrics'));
  expect(res.status).toBe(404);
  expect(res.json().error).toBe('metrics_disabled');
  expect((await request(c.url('shard1', 'primary', dataPath('set', 'k', 'v')))).status).toBe(200);
  expect((await request(c.url('shard1', 'primary', dataPath('get', 'k')))).text()).toBe('v');
  expect((await request(c.url('shard1', 'primary', '/status'))).json().requests.served).toBeUndefined();
});
