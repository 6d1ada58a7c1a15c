// A replica restarted with a new layout does not take a local miss as final until its primary has said
// whether keys still move to it under that layout: what it remembers from its primary belongs to the
// layout it was heard under. Here shard2 is removed and its keys move to shard1; shard1's replica is
// restarted first, with its primary down, so only its memory of the old layout could answer.
import { afterAll, expect, it } from 'vitest';
import { Cluster, dataPath, keyOwnedBy, request } from '../helpers/cluster.js';
import { status } from '../helpers/replication.js';

let cluster: Cluster | undefined;
afterAll(async () => {
  await cluster?.destroy();
});

/** Polls until `shard1`'s replica reports what its primary last said about migrating. */
async function waitPrimaryMigrating(expected: boolean | null): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const replica = await status(cluster!, 'shard1', 'replica');
    if (replica['layout']['primary_migrating'] === expected) return;
    if (Date.now() > deadline) throw new Error(`primary_migrating did not become ${expected}: ${JSON.stringify(replica['layout'])}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

it('answers a key moving to its shard 503 while its primary is down, not 404, and 200 once it can be read', async () => {
  cluster = await Cluster.create(2);
  await cluster.startAll();
  const key = keyOwnedBy('shard2', 2, 'moving-');
  expect((await request(cluster.url('shard2', 'primary', dataPath('set', key, 'here')))).status).toBe(200);
  // The replica has heard, under the two-shard layout, that no keys move to its primary.
  await waitPrimaryMigrating(false);

  await cluster.stopAll();
  cluster.reconfigure(cluster.shards.slice(0, 1));
  await cluster.start('shard1', 'replica');
  expect((await status(cluster, 'shard1', 'replica'))['layout']['primary_migrating']).toBe(null);
  const whileDown = await request(cluster.url('shard1', 'replica', dataPath('get', key)));
  expect(whileDown.status).toBe(503);
  expect(whileDown.json()).toMatchObject({ error: 'shard_unavailable' });

  const drained = cluster.startDrain('shard2');
  await cluster.start('shard1', 'primary');
  // The replica's first forward marked its primary down; reads answer 503 until its probe sees it up.
  // Any answer but 503 counts, and it must be the key's value.
  const deadline = Date.now() + 30_000;
  let read = await request(cluster.url('shard1', 'replica', dataPath('get', key)));
  while (read.status === 503 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    read = await request(cluster.url('shard1', 'replica', dataPath('get', key)));
  }
  expect(read.status).toBe(200);
  expect(read.text()).toBe('here');
  expect(await drained).toBe(0);
});
