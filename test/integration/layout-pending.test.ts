// A primary with no layout of its own cannot tell a new cluster from one it is joining until a peer
// answers: meanwhile it refuses requests for its own keys with 503 layout_pending (retriable), and it
// serves them as soon as a peer shows the cluster is new.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { alone, Cluster, dataPath, keyOwnedBy, request } from '../helpers/cluster.js';

let cluster: Cluster;
beforeAll(async () => {
  // Primaries only: half the nodes, never a majority. The longest node timeout keeps the minority
  // fence (failover.md) out of what this file tests.
  cluster = await Cluster.create(2, undefined, 'node_timeout_ms = 600000');
});
afterAll(async () => {
  await cluster?.destroy();
});

it('answers 503 layout_pending for its own keys until a peer has answered', async () => {
  await cluster.start('shard1', 'primary', undefined, alone);
  const own = keyOwnedBy('shard1', 2, 'pending-');
  const pending = await request(cluster.url('shard1', 'primary', dataPath('get', own)));
  expect(pending.status).toBe(503);
  expect(pending.json()).toMatchObject({ error: 'layout_pending', retriable: true });
  expect((await request(cluster.url('shard1', 'primary', dataPath('set', own, 'x')))).status).toBe(503);

  await cluster.start('shard2', 'primary', undefined, alone);
  await cluster.waitLayoutDecided();
  expect((await request(cluster.url('shard1', 'primary', dataPath('get', own)))).status).toBe(404);
  expect((await request(cluster.url('shard1', 'primary', dataPath('set', own, 'x')))).status).toBe(200);
});
