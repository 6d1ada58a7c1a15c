// A primary that cannot confirm its position with its replica at start (the replica is down) serves
// its data under a new dataset id that branches off the old one at its last sequence. A replica that
// was not past that point follows the new dataset when it is back, from where it stands: no full
// resync, nothing lost. One that was past it (the primary's data dir went back to an older copy) holds
// writes the primary lacks: it refuses the primary's data even after the primary has written more
// than the replica ever had, keeping both copies apart instead of silently mixing two histories.
import { cpSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { dataPath, keyOwnedBy, request, waitFor, useCluster } from '../helpers/cluster.js';
import { status, waitConverged } from '../helpers/replication.js';

// Two shards: a restarted primary takes writes once another node (here shard2) has confirmed its epochs.
const cluster = useCluster(2);
const key = (name: string) => keyOwnedBy('shard1', 2, `${name}-`);

const dir = (member: 'primary' | 'replica') => join(cluster().dataDir, member === 'primary' ? 'shard1-a' : 'shard1-b');

async function write(prefix: string, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    expect((await request(cluster().url('shard1', 'primary', dataPath('set', key(`${prefix}-${i}`), `${prefix}:${i}`)))).status).toBe(200);
  }
}

describe('a primary that starts while its replica is down', () => {
  it('branches its dataset, and the replica follows it from where it stands without a resync', async () => {
    await write('before', 50);
    await waitConverged(cluster(), 'shard1');
    const before = await status(cluster(), 'shard1', 'primary');
    await cluster().stop('shard1', 'replica');
    await cluster().stop('shard1', 'primary');
    await cluster().start('shard1', 'primary');
    const forked = await status(cluster(), 'shard1', 'primary');
    expect(forked['dataset_id']).not.toBe(before['dataset_id']);
    expect(forked['last_seq']).toBe(before['last_seq']);
    await write('while-down', 40);

    await cluster().start('shard1', 'replica');
    await waitConverged(cluster(), 'shard1');
    const replica = await status(cluster(), 'shard1', 'replica');
    expect(replica['dataset_id']).toBe(forked['dataset_id']);
    expect(replica['resyncs']).toBe(0);
    expect(replica['keys']).toBe(90);
    expect(cluster().output('shard1', 'replica')).not.toMatch(/full resync/);
  });

  it('with an older copy of its data is refused by the replica, also after writing more than the replica has', async () => {
    await cluster().stop('shard1', 'primary');
    const older = join(cluster().dir, 'older-copy');
    cpSync(dir('primary'), older, { recursive: true });
    await cluster().start('shard1', 'primary');
    await write('later', 30);
    await waitConverged(cluster(), 'shard1');
    const replicaBefore = await status(cluster(), 'shard1', 'replica');

    await cluster().stop('shard1', 'replica');
    await cluster().stop('shard1', 'primary');
    rmSync(dir('primary'), { recursive: true, force: true });
    cpSync(older, dir('primary'), { recursive: true });
    await cluster().start('shard1', 'primary');
    // Past the replica's sequence, so a comparison of sequences alone would let the batches through.
    await write('diverging', 80);
    expect((await status(cluster(), 'shard1', 'primary'))['last_seq']).toBeGreaterThan(replicaBefore['applied_seq']);

    await cluster().start('shard1', 'replica');
    const refused = await waitFor('the refusal', async () => (await status(cluster(), 'shard1', 'replica'))['resync_refused'] ?? undefined);
    expect(refused.reason).toMatch(/branched off this replica's at seq \d+, and this replica holds writes up to/);
    const replica = await status(cluster(), 'shard1', 'replica');
    expect(replica['applied_seq']).toBe(replicaBefore['applied_seq']);
    expect(replica['keys']).toBe(replicaBefore['keys']);
    expect((await request(cluster().url('shard1', 'replica', dataPath('get', key('later-29'))))).text()).toBe('later:29');
    expect((await request(cluster().url('shard1', 'replica', dataPath('get', key('diverging-0'))))).status).toBe(404);
    expect((await request(cluster().url('shard1', 'primary', dataPath('get', key('diverging-79'))))).text()).toBe('diverging:79');
    expect((await status(cluster(), 'shard1', 'primary'))['replication']['state']).toBe('refused');
  });
});
