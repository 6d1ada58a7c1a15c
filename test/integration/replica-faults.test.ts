// Replica faults: a replica killed with -9 in the middle of a write load, or stopped while 5,000 writes
// happen, catches up from the primary's log when it comes back, with nothing lost, duplicated or
// reordered. The primary accepts every write meanwhile and never needs a full resync for it.
import { beforeAll, describe, expect, it } from 'vitest';
import { dataPath, request, useCluster } from '../helpers/cluster.js';
import { runLoad, status, waitConverged } from '../helpers/replication.js';

const cluster = useCluster(1);
beforeAll(async () => {
  await waitConverged(cluster(), 'shard1');
});

/**
 * Writes `total` keys with `concurrency` writers and resolves with every acknowledged key and value, in
 * the order acknowledged. `onAck` sees the count after each acknowledgement.
 */
async function writeLoad(prefix: string, total: number, concurrency = 16, onAck?: (acked: number) => void): Promise<Map<string, string>> {
  const acked = new Map<string, string>();
  let count = 0;
  await runLoad(concurrency, total, async (i, worker) => {
    const key = `${prefix}-${worker}-${i % 100}`;
    const value = `${prefix}:${i}`;
    const res = await request(cluster().url('shard1', 'primary', dataPath('set', key, value)));
    expect(res.status).toBe(200);
    acked.set(key, value);
    onAck?.(++count);
  });
  return acked;
}

async function expectOnReplica(values: Map<string, string>): Promise<void> {
  for (const [key, value] of values) {
    const res = await request(cluster().url('shard1', 'replica', dataPath('get', key)));
    expect(res.headers.get('x-kv-role')).toBe('replica');
    expect(res.text()).toBe(value);
  }
}

describe('replica faults', () => {
  it('converges after kill -9 of the replica in the middle of a write load', async () => {
    const resyncsBefore = (await status(cluster(), 'shard1', 'primary'))['replication']['resyncs'];
    // The replica is killed once the load's first 500 writes are acknowledged; its death (the process
    // exit) must come while writes are still being acknowledged.
    let acks = 0;
    let acksAtDeath = -1;
    let killed: Promise<void> | undefined;
    const acked = await writeLoad('kill', 4_000, 16, (count) => {
      acks = count;
      if (count !== 500) return;
      killed = cluster()
        .kill('shard1', 'replica')
        .then(() => {
          acksAtDeath = acks;
        });
    });
    await killed;
    expect(acksAtDeath).toBeGreaterThanOrEqual(500);
    expect(acks - acksAtDeath, 'writes acknowledged after the replica died').toBeGreaterThan(0);
    await cluster().start('shard1', 'replica');
    const result = await waitConverged(cluster(), 'shard1');
    expect(result.keys).toBeGreaterThanOrEqual(acked.size);
    await expectOnReplica(acked);
    expect((await status(cluster(), 'shard1', 'primary'))['replication']['resyncs']).toBe(resyncsBefore);
  });

  it('catches up on 5,000 writes made while it was stopped', async () => {
    const resyncsBefore = (await status(cluster(), 'shard1', 'primary'))['replication']['resyncs'];
    expect(await cluster().stop('shard1', 'replica')).toBe(0);
    const acked = await writeLoad('down', 5_000);
    const primary = await status(cluster(), 'shard1', 'primary');
    expect(primary['replication']['reachable']).toBe(false);
    expect(primary['replication']['lag_entries']).toBeGreaterThanOrEqual(5_000);
    await cluster().start('shard1', 'replica');
    await waitConverged(cluster(), 'shard1');
    await expectOnReplica(acked);
    expect((await status(cluster(), 'shard1', 'primary'))['replication']['resyncs']).toBe(resyncsBefore);
  });
});
