// A KvClient under a running workload while the cluster grows from 3 to 4 shards (every node restarted
// with the new sharding.toml, keys moving while it serves). The client keeps its one endpoint and is told
// nothing: it learns the new layout from the nodes' moved answers. No error reaches the caller (its
// deadline covers the restart), and every write it had acknowledged reads back afterwards.

import { afterAll, expect, it } from 'vitest';
import { KvClient } from '../../src/client/index.js';
import { Cluster, request, waitFor } from '../helpers/cluster.js';
import { ClientLoop, forwardedBy } from '../helpers/client-loop.js';
import { slowMigration, waitMigrated } from '../helpers/resize.js';

const preload = 5_000;
let cluster: Cluster | undefined;
let client: KvClient | undefined;
afterAll(async () => {
  await client?.close();
  await cluster?.destroy();
});

it('follows a grow from 3 to 4 shards with no error and every acknowledged write readable', async () => {
  cluster = await Cluster.create(3, undefined, slowMigration(100));
  await cluster.startAll();
  client = new KvClient({ endpoints: [cluster.address('shard1')], timeoutMs: 30_000, retries: 200 });
  const keys = Array.from({ length: preload }, (_, i) => `p${i}`);
  let next = 0;
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (next < keys.length) {
        const key = keys[next++]!;
        await client!.set(key, `v-${key}`);
      }
    }),
  );
  const before = (await client.cluster()).layout_id;
  const loop = new ClientLoop(client, 'g');
  await loop.progress(300);

  await cluster.stopAll();
  cluster.reconfigure([...cluster.shards, await Cluster.extraShard(3)]);
  await cluster.startAll();
  // While slots move, the new shard's map names them and their previous owners.
  const moving = await waitFor('the new shard to report slots moving to it', async () => {
    const map = (await request(cluster!.url('shard4', 'primary', '/cluster'))).json();
    return map.migration?.moving_here?.length > 0 ? map.migration : undefined;
  });
  expect(moving.from_layout).toBe(before);
  expect(new Set(moving.moving_here.map((r: { previous_owner: string }) => r.previous_owner))).toEqual(new Set(['shard1', 'shard2', 'shard3']));
  await loop.progress(300);
  await waitMigrated(cluster);
  await loop.progress(300);
  await loop.stop();
  expect(loop.errors).toEqual([]);
  expect(loop.wrong).toEqual([]);

  const map = await client.cluster();
  expect(map.layout_id).not.toBe(before);
  expect(map.shards.map((s) => s.name)).toEqual(['shard1', 'shard2', 'shard3', 'shard4']);
  const all = [...keys, ...loop.acked.keys()];
  const expected = all.map((k) => loop.acked.get(k)?.value ?? `v-${k}`);
  expect((await client.getMany(all)).map((v) => v?.toString())).toEqual(expected);

  // In the new layout's steady state the client sends nothing through a non-owner.
  const nodes = cluster.nodes().map(([shard, role]) => cluster!.address(shard, role));
  const forwardedBefore = await Promise.all(nodes.map(forwardedBy));
  await client.getMany(all.slice(0, 2000));
  expect(await Promise.all(nodes.map(forwardedBy))).toEqual(forwardedBefore);
  console.log(`client resize: ${loop.acked.size} writes acknowledged during the grow, ${loop.reads} reads`);
}, 240_000);
