// A replica takes its primary's "no keys move in" as final only once it holds every entry the primary
// had when it said so: the keys that moved in are in those entries, and a batch may stop short of them
// (a lagging replica, or the primary's first message from its log's end). The test plays the primary,
// so what the replica has applied and what it has been told are set exactly, not raced.
import { randomUUID } from 'node:crypto';
import { expect, it } from 'vitest';
import { tokenHeader } from '../../src/core/wire.js';
import { encodeMessage, replicatePath, resyncPath, type ReplicateMessage, type ResyncMessage } from '../../src/replication/replication-protocol.js';
import { keySlot } from '../../src/core/slots.js';
import { dataPath, request, testToken, useCluster } from '../helpers/cluster.js';
import { status } from '../helpers/replication.js';

// Only the replica runs: the test sends what its primary would.
const cluster = useCluster(1, { replicasOnly: true });

async function post(path: string, message: ReplicateMessage | ResyncMessage): Promise<void> {
  const reply = await request(cluster().url('shard1', 'replica', path), {
    method: 'POST',
    headers: { [tokenHeader]: testToken, 'content-type': 'application/msgpack' },
    body: new Uint8Array(encodeMessage(message)),
  });
  expect(reply.status, reply.text()).toBe(200);
}

const entry = (seq: number) => {
  const key = Buffer.from(`moved-${seq}`);
  return { seq, type: 'set' as const, slot: keySlot(key), key, value: Buffer.from(`v${seq}`), ts: Date.now() };
};

it('keeps sending misses to its primary until it has applied what the primary held when it said "no keys move in"', async () => {
  const primary = cluster().address('shard1', 'primary');
  const layoutId = (await status(cluster(), 'shard1', 'replica'))['layout_id'];
  const datasetId = randomUUID();
  const epoch = { epoch: 1, primary, kind: 'initial' as const, at: null };
  const batch = (migrating: boolean, entries: ReturnType<typeof entry>[]): ReplicateMessage => ({
    primary,
    datasetId,
    forkedFrom: null,
    primarySeq: 4,
    sentAt: Date.now(),
    layoutId,
    migrating,
    epoch,
    entries,
  });
  // An empty dataset, so the replica's copy is complete and it answers reads itself.
  const resyncId = randomUUID();
  await post(resyncPath, { phase: 'begin', resyncId, primary, datasetId, forkedFrom: null, snapshotSeq: 0, keyCount: 0, force: false, epoch });
  await post(resyncPath, { phase: 'end', resyncId, datasetId, snapshotSeq: 0, keyCount: 0, epoch });

  // Keys are moving in; entries 1 and 2 arrive.
  await post(replicatePath, batch(true, [entry(1), entry(2)]));
  expect((await status(cluster(), 'shard1', 'replica'))['layout']['primary_migrating']).toBe(true);

  // The migration is over on the primary at seq 4, but this batch stops at 2: a miss here is not final.
  await post(replicatePath, batch(false, []));
  expect((await status(cluster(), 'shard1', 'replica'))['layout']['primary_migrating']).toBe(true);
  const early = await request(cluster().url('shard1', 'replica', dataPath('get', 'moved-4')));
  expect(early.status, early.text()).toBe(503);
  expect(early.json()).toMatchObject({ error: 'shard_unavailable' });

  // Entries 3 and 4 arrive: the replica now holds everything, and a miss is final.
  await post(replicatePath, batch(false, [entry(3), entry(4)]));
  expect((await status(cluster(), 'shard1', 'replica'))['layout']['primary_migrating']).toBe(false);
  const held = await request(cluster().url('shard1', 'replica', dataPath('get', 'moved-4')));
  expect(held.status).toBe(200);
  expect(held.text()).toBe('v4');
  const missing = await request(cluster().url('shard1', 'replica', dataPath('get', 'never-written')));
  expect(missing.status).toBe(404);
});
