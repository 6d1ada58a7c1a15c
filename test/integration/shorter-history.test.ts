// A replica never lets a full resync replace a dataset holding data with a shorter history. Here the
// primary's data dir is put back to an older copy while its replica is down, so the primary starts
// serving its own data and, once the replica is back, tries to resync it: the replica refuses, keeps
// every key and says why in its log and /status. Restarted, the primary finds the replica further on,
// keeps a copy of its own data under replaced/, and rebuilds from the replica. A primary started with
// --overwrite-replica does replace the replica's data: that is how an operator restores deliberately.
import { cpSync, existsSync, readdirSync, rmSync } from 'node:fs';
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
    const res = await request(cluster().url('shard1', 'primary', dataPath('set', key(`${prefix}-${i}`), `${prefix}:${i}`)));
    expect(res.status, res.text()).toBe(200);
  }
}

// biome-ignore lint/complexity/noExcessiveLinesPerFunction: a describe() suite, not a function: its tests share one setup
describe('a primary with a shorter history than its replica', () => {
  it('is refused by the replica, which keeps its data, and rebuilds from it when restarted', async () => {
    await write('old', 100);
    await waitConverged(cluster(), 'shard1');
    await cluster().stop('shard1', 'primary');
    const older = join(cluster().dir, 'older-primary-copy');
    cpSync(dir('primary'), older, { recursive: true });
    await cluster().start('shard1', 'primary');
    await write('new', 150);
    await waitConverged(cluster(), 'shard1');

    // Both stop; the primary's data dir goes back to the older copy; the primary starts alone.
    await cluster().stop('shard1', 'replica');
    await cluster().stop('shard1', 'primary');
    rmSync(dir('primary'), { recursive: true, force: true });
    cpSync(older, dir('primary'), { recursive: true });
    await cluster().start('shard1', 'primary');
    expect((await status(cluster(), 'shard1', 'primary'))['keys']).toBe(100);

    await cluster().start('shard1', 'replica');
    const refused = await waitFor('the refusal', async () => {
      const replica = await status(cluster(), 'shard1', 'replica');
      return replica['resync_refused'] ?? undefined;
    });
    expect(refused.reason).toMatch(/a resync would lose writes/);
    // Unconfirmed at start, the primary serves its data under a dataset id branched off at seq 100.
    expect(cluster().output('shard1', 'primary')).toMatch(
      /did not answer within \d+ ms: serving this data dir's data as dataset \S+, branched off \S+ at seq 100/,
    );
    expect(cluster().output('shard1', 'replica')).toMatch(
      /refusing a full resync from \S+: the primary's dataset branched off this replica's at seq 100, and this replica holds writes up to seq 250/,
    );
    const primary = await waitFor('the primary noting it', async () => {
      const s = await status(cluster(), 'shard1', 'primary');
      return s['replication']['state'] === 'refused' ? s : undefined;
    });
    expect(primary['replication']['refusal']).toMatch(/a resync would lose writes/);
    const replica = await status(cluster(), 'shard1', 'replica');
    expect(replica['keys']).toBe(250);
    expect(replica['complete']).toBe(true);
    expect((await request(cluster().url('shard1', 'replica', dataPath('get', key('new-149'))))).text()).toBe('new:149');

    // Restarted, the primary sees the replica further on and rebuilds from it, keeping its own copy.
    await cluster().stop('shard1', 'primary');
    await cluster().start('shard1', 'primary');
    expect(cluster().output('shard1', 'primary')).toMatch(/kept a copy of this data dir's 100 keys in \S+replaced\S+ before rebuilding from the replica/);
    expect(readdirSync(join(cluster().dataDir, 'replaced'))).toHaveLength(1);
    expect((await status(cluster(), 'shard1', 'primary'))['keys']).toBe(250);
    expect((await request(cluster().url('shard1', 'primary', dataPath('get', key('new-149'))))).text()).toBe('new:149');
    await write('after', 5);
    await waitConverged(cluster(), 'shard1');
  });

  it('restores an older copy of the same dataset over a replica that is further on with --overwrite-replica', async () => {
    await write('restore-base', 20);
    await waitConverged(cluster(), 'shard1');
    await cluster().stop('shard1', 'primary');
    const backup = join(cluster().dir, 'restore-backup');
    cpSync(dir('primary'), backup, { recursive: true });
    await cluster().start('shard1', 'primary');
    await write('restore-later', 30);
    await waitConverged(cluster(), 'shard1');
    const before = await status(cluster(), 'shard1', 'replica');

    await cluster().stop('shard1', 'primary');
    rmSync(dir('primary'), { recursive: true, force: true });
    cpSync(backup, dir('primary'), { recursive: true });
    await cluster().start('shard1', 'primary', undefined, { args: ['--overwrite-replica'] });
    await waitConverged(cluster(), 'shard1');
    const after = await status(cluster(), 'shard1', 'replica');
    expect(after['keys']).toBe(before['keys'] - 30);
    expect((await request(cluster().url('shard1', 'replica', dataPath('get', key('restore-later-0'))))).status).toBe(404);
    expect((await request(cluster().url('shard1', 'replica', dataPath('get', key('restore-base-0'))))).text()).toBe('restore-base:0');
  });

  it('replaces the replica when the primary is started with --overwrite-replica', async () => {
    await cluster().stop('shard1', 'primary');
    rmSync(dir('primary'), { recursive: true, force: true });
    await cluster().start('shard1', 'primary', undefined, { args: ['--overwrite-replica'] });
    await cluster().waitLayoutDecided(['shard1']); // an emptied data dir learns the layout from shard2
    expect((await status(cluster(), 'shard1', 'primary'))['keys']).toBe(0);
    const restored = await request(cluster().url('shard1', 'primary', dataPath('set', key('restored'), 'yes')));
    expect(restored.status, restored.text()).toBe(200);
    await waitConverged(cluster(), 'shard1');
    expect((await status(cluster(), 'shard1', 'replica'))['keys']).toBe(1);
    expect((await request(cluster().url('shard1', 'replica', dataPath('get', key('new-1'))))).status).toBe(404);
    expect(cluster().output('shard1', 'replica')).toMatch(/which the primary was started to force/);
    expect(existsSync(dir('primary'))).toBe(true);
  });

  it('goes on overwriting the replica after a restart without the flag, until the replica has taken it', async () => {
    await write('kept-on-replica', 10);
    await waitConverged(cluster(), 'shard1');
    await cluster().stop('shard1', 'replica');
    await cluster().stop('shard1', 'primary');
    rmSync(dir('primary'), { recursive: true, force: true });
    await cluster().start('shard1', 'primary', undefined, { args: ['--overwrite-replica'] });
    await cluster().waitLayoutDecided(['shard1']); // an emptied data dir learns the layout from shard2
    await write('overwrite', 3);
    await cluster().stop('shard1', 'primary');
    await cluster().start('shard1', 'primary');
    expect(cluster().output('shard1', 'primary')).toMatch(/has not yet taken the data this primary was started to overwrite it with/);
    await cluster().start('shard1', 'replica');
    await waitConverged(cluster(), 'shard1');
    expect((await status(cluster(), 'shard1', 'replica'))['keys']).toBe(3);
    expect((await request(cluster().url('shard1', 'replica', dataPath('get', key('kept-on-replica-0'))))).status).toBe(404);
  });
});
