// Every replication message and every answer carries its sender's epoch for the shard. A real replica
// runs alone and the test plays its primary, so the epochs it sees are set exactly: it takes a higher
// epoch as the message names it (primary, kind and time, nothing invented), answers with its own, and
// refuses batches, resyncs and snapshot requests from a lower epoch with 409 stale_epoch naming the newer
// epoch and its primary. Holding a dataset of epoch 2, it refuses a resync of an unrelated dataset from
// epoch 1 even when that one's sequence is further on, and keeps its data. On the primary's side, a
// sender that gets an answer naming a higher epoch reports it, so its node can learn it.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ShardEpoch } from '../../src/cluster/epochs.js';
import { keySlot } from '../../src/core/slots.js';
import { tokenHeader } from '../../src/core/wire.js';
import { ReplicationSender } from '../../src/replication/replication-sender.js';
import { encodeMessage, replicatePath, resyncPath, snapshotPath, type ReplicateMessage } from '../../src/replication/replication-protocol.js';
import { storageKey } from '../../src/storage/keys.js';
import { Store } from '../../src/storage/store.js';
import { dataPath, request, testToken, useCluster, waitFor } from '../helpers/cluster.js';
import { status } from '../helpers/replication.js';

// Only the replica runs: the test sends what its primary would.
const cluster = useCluster(1, { replicasOnly: true });

async function post(path: string, message: object): Promise<{ status: number; body: Record<string, any> }> {
  const reply = await request(cluster().url('shard1', 'replica', path), {
    method: 'POST',
    headers: { [tokenHeader]: testToken, 'content-type': 'application/msgpack' },
    body: new Uint8Array(encodeMessage(message as ReplicateMessage)),
  });
  return { status: reply.status, body: reply.json() };
}

const pair = (key: string, value: string): [Buffer, Buffer] => [storageKey(keySlot(Buffer.from(key)), Buffer.from(key)), Buffer.from(value)];

/** A whole resync of `pairs` as dataset `datasetId` at `snapshotSeq`, sent at `epoch`; the answer to the first refused step, else to the end. */
async function resync(epoch: ShardEpoch, datasetId: string, snapshotSeq: number, pairs: [Buffer, Buffer][]) {
  const resyncId = randomUUID();
  const fields = { resyncId, epoch };
  const begin = await post(resyncPath, {
    ...fields,
    phase: 'begin',
    primary: epoch.primary,
    datasetId,
    forkedFrom: null,
    snapshotSeq,
    keyCount: pairs.length,
    force: false,
  });
  if (begin.status !== 200) return begin;
  const chunk = await post(resyncPath, { ...fields, phase: 'chunk', pairs });
  if (chunk.status !== 200) return chunk;
  return post(resyncPath, { ...fields, phase: 'end', datasetId, snapshotSeq, keyCount: pairs.length });
}

describe('epochs on replication messages', () => {
  it('learns a higher epoch as named, and refuses what comes from a lower one', async () => {
    const primary = cluster().address('shard1', 'primary');
    const first: ShardEpoch = { epoch: 1, primary, kind: 'initial', at: null };
    const second: ShardEpoch = { epoch: 2, primary, kind: 'switchover', at: '2026-01-02T03:04:05.000Z' };
    const layoutId = (await status(cluster(), 'shard1', 'replica'))['layout_id'];

    const initial = await resync(first, randomUUID(), 1, [pair('one', '1')]);
    expect(initial).toEqual({ status: 200, body: { appliedSeq: 1, epoch: first } });

    // Epoch 2 arrives with a resync of a dataset written at it: learned with its kind and time.
    const dataset2 = randomUUID();
    const taken = await resync(second, dataset2, 5, [pair('two', '2'), pair('three', '3')]);
    expect(taken).toEqual({ status: 200, body: { appliedSeq: 5, epoch: second } });
    const learned = await waitFor('the replica stores epoch 2', async () => {
      const s = await status(cluster(), 'shard1', 'replica');
      return s['epoch']?.['epoch'] === 2 && s['epoch'];
    });
    expect(learned).toEqual(second);

    const stale = { status: 409, body: expect.objectContaining({ error: 'stale_epoch', epoch: second }) };
    // An unrelated dataset from epoch 1, further on than the one held: refused, nothing wiped.
    expect(await resync(first, randomUUID(), 50, [pair('stale', 'x')])).toEqual(stale);
    const batch = { primary, datasetId: dataset2, forkedFrom: null, primarySeq: 6, sentAt: Date.now(), layoutId, migrating: false, epoch: first };
    const entry = { seq: 6, type: 'set', slot: keySlot(Buffer.from('two')), key: Buffer.from('two'), value: Buffer.from('stale'), ts: Date.now() };
    expect(await post(replicatePath, { ...batch, entries: [entry] })).toEqual(stale);
    expect(await post(snapshotPath, { primary, phase: 'begin', epoch: first })).toEqual(stale);

    const after = await status(cluster(), 'shard1', 'replica');
    expect(after).toMatchObject({ applied_seq: 5, keys: 2, dataset_id: dataset2 });
    expect((await request(cluster().url('shard1', 'replica', dataPath('get', 'two')))).text()).toBe('2');

    // The primary of epoch 2 goes on as before.
    expect(await post(replicatePath, { ...batch, epoch: second, entries: [{ ...entry, value: Buffer.from('6') }] })).toEqual({
      status: 200,
      body: { appliedSeq: 6, epoch: second },
    });
  });
});

describe('a sender told of a higher epoch', () => {
  let server: Server;
  let dir: string;
  const newer: ShardEpoch = { epoch: 3, primary: '127.0.0.1:2', kind: 'forced', at: '2026-01-02T03:04:05.000Z' };
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kvshard-sender-epoch-'));
    // A replica that knows epoch 3: it refuses everything this primary at epoch 1 sends, naming epoch 3.
    server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(409, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ appliedSeq: 0, error: 'stale_epoch', reason: 'epoch 3 is newer', epoch: newer }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });

  it('reports the epoch and primary the reply names', async () => {
    const store = new Store({ path: join(dir, 'shard1-a'), replicationLog: true });
    await store.dataset.startDataset();
    const replicaAddress = `127.0.0.1:${(server.address() as AddressInfo).port}`;
    const seen: [string, ShardEpoch, string][] = [];
    const sender = new ReplicationSender({
      store,
      log: store.log!,
      primaryAddress: '127.0.0.1:1',
      replicaAddress,
      token: testToken,
      logRetentionBytes: 1 << 20,
      logger: { error() {}, warn() {}, info() {}, debug() {} },
      layoutId: 'layout',
      migrating: () => false,
      shard: 'shard1',
      epoch: () => ({ epoch: 1, primary: '127.0.0.1:1', kind: 'initial', at: null }),
      onEpochSeen: (shard, epoch, from) => seen.push([shard, epoch, from]),
    });
    try {
      sender.start();
      await waitFor('the sender reports epoch 3', () => seen.length > 0);
      expect(seen[0]).toEqual(['shard1', newer, replicaAddress]);
      expect(sender.status()).toMatchObject({ state: 'refused' });
    } finally {
      await sender.close(0);
      await store.close();
    }
  });
});
