// A forced failover after kill -9 of a primary under write load. Without --force the command refuses
// and changes nothing; with it the replica takes over at the next epoch, and writes succeed through
// any node at once. Every ack=replica write acknowledged before the kill is on the new primary; every
// ack=primary one is either there or in the old primary's rollback file once it rejoins, never in both
// and never in neither. The old primary, restarted, rejoins as replica: a write sent to it gets 403.
// While the primary still answers, --force is refused, by the command and by the member, and nothing
// changes.

import { describe, expect, it } from 'vitest';
import { tokenHeader } from '../../src/core/wire.js';
import { dataPath, keyOwnedBy, request, testToken, useCluster, waitFor } from '../helpers/cluster.js';
import { lastRollbackFile, memberStatus, runFailover, waitRoles } from '../helpers/failover.js';

const cluster = useCluster(2);

/**
 * Writes to shard1's primary under load (a quarter with ack=replica), then 50 ack=primary writes while
 * its replica is stopped (the replication lag window, made wide), then kill -9 of the primary.
 */
async function writeUntilKilled() {
  const acked = new Map<string, { value: string; ack: 'primary' | 'replica' }>();
  let killed = false;
  const primary = cluster().address('shard1', 'primary');
  const load = Array.from({ length: 16 }, async (_, worker) => {
    for (let i = 0; !killed && i < 20_000; i++) {
      const ack = worker % 4 === 0 ? 'replica' : 'primary';
      const key = keyOwnedBy('shard1', 2, `f-${worker}-${i}-`);
      const value = `v${worker}-${i}`;
      const res = await request(`http://${primary}${dataPath('set', key, value, `&ack=${ack}`)}`).catch(() => undefined);
      if (res?.status !== 200) return;
      acked.set(key, { value, ack });
    }
  });
  while (acked.size < 2_000) await new Promise((r) => setTimeout(r, 20));
  // The replication lag window, made wide: writes the primary acknowledges while its replica is stopped.
  cluster().suspend('shard1', 'replica');
  const lagged: string[] = [];
  for (let i = 0; i < 50; i++) {
    const key = keyOwnedBy('shard1', 2, `lag-${i}-`);
    const res = await request(`http://${primary}${dataPath('set', key, `lag${i}`)}`);
    expect(res.status).toBe(200);
    acked.set(key, { value: `lag${i}`, ack: 'primary' });
    lagged.push(key);
  }
  await cluster().kill('shard1', 'primary');
  killed = true;
  cluster().resume('shard1', 'replica');
  await Promise.all(load);
  return { acked, lagged };
}

/** The writes in the one rollback file the rejoined old primary reports, by key. */
function readRollback(rejoined: Record<string, any>): Map<string, string> {
  expect(rejoined['rollbacks']['files']).toBe(1);
  const { header, writes } = lastRollbackFile(rejoined)!;
  expect(header).toMatchObject({ kvshard_rollback: 1, shard: 'shard1', missing: 0, new_primary: cluster().address('shard1', 'replica') });
  expect(writes.size).toBe(rejoined['rollbacks']['entries']);
  return writes;
}

describe('forced failover', () => {
  it('is refused while the primary answers, by the command and by the member, changing nothing', async () => {
    const byCommand = await runFailover(cluster(), 'shard1', true);
    expect(byCommand.code, byCommand.stderr).toBe(5);
    expect(byCommand.stderr).toMatch(/^kvshard: failover_refused: shard1: \S+ answers \(it serves as primary\): --force is for a primary that is down/);
    // The member refuses on its own too (a command that could not reach the primary still asks it).
    const byMember = await request(cluster().url('shard1', 'replica', '/internal/failover'), {
      method: 'POST',
      headers: { 'content-type': 'application/json', [tokenHeader]: testToken },
      body: JSON.stringify({ force: true }),
    });
    expect(byMember.status).toBe(409);
    expect(byMember.json()).toMatchObject({ error: 'failover_refused', primary: cluster().address('shard1', 'primary'), epoch: 1 });
    expect(byMember.json().message).toMatch(/answers .*it is not down/);
    const replica = await memberStatus(cluster(), 'shard1', 'replica');
    expect(replica['role']).toBe('replica');
    expect(replica['epoch']['epoch']).toBe(1);
    expect((await memberStatus(cluster(), 'shard1', 'primary'))['role']).toBe('primary');
  });

  it('promotes the replica of a killed primary; what the replica never got goes to the rollback file', async () => {
    const { acked, lagged } = await writeUntilKilled();
    const before = new Map(acked);

    const refused = await runFailover(cluster(), 'shard1');
    expect(refused.code, refused.stdout).toBe(5);
    expect(refused.stderr).toContain('--force');
    expect((await memberStatus(cluster(), 'shard1', 'replica'))['role']).toBe('replica');

    const forced = await runFailover(cluster(), 'shard1', true);
    expect(forced.code, forced.stderr).toBe(0);
    expect(forced.stdout).toContain(`${cluster().address('shard1', 'replica')} is primary at epoch 2 (forced`);
    // Writes to the shard succeed again through any node that takes writes, right after the command.
    for (const [shard, member] of [
      ['shard2', 'primary'],
      ['shard1', 'replica'],
    ] as const) {
      const res = await request(cluster().url(shard, member, dataPath('set', keyOwnedBy('shard1', 2, `after-${shard}-`), 'x')));
      expect(res.status, res.text()).toBe(200);
    }

    const newPrimary = async (key: string) => {
      const res = await request(cluster().url('shard1', 'replica', dataPath('get', key)));
      return res.status === 200 ? res.text() : undefined;
    };
    for (const [key, { value, ack }] of before) if (ack === 'replica') expect(await newPrimary(key), key).toBe(value);

    // The old primary rejoins as the new primary's replica, writing what the new primary lacks to its rollback file.
    await cluster().start('shard1', 'primary', undefined, { ready: false });
    await waitRoles(cluster(), 'shard1', 'replica');
    const rejoined = await memberStatus(cluster(), 'shard1', 'primary');
    const rolled = readRollback(rejoined);
    // The replica's kernel may still have taken the batch in flight when it stopped, and applied it on
    // resuming: a lagged write is on the new primary or in the rollback file. The last ones, made while
    // the primary waited on that batch, are in the file.
    for (const key of lagged) expect(rolled.get(key) ?? (await newPrimary(key)), key).toBe(acked.get(key)!.value);
    expect(rolled.get(lagged.at(-1)!)).toBe(acked.get(lagged.at(-1)!)!.value);
    let inBoth = 0;
    let inNeither = 0;
    for (const [key, { value }] of before) {
      const present = (await newPrimary(key)) === value;
      const rolledBack = rolled.get(key) === value;
      if (present && rolledBack) inBoth++;
      if (!present && !rolledBack) inNeither++;
    }
    expect({ inBoth, inNeither }).toEqual({ inBoth: 0, inNeither: 0 });

    // Fenced: a client's write to the old primary gets 403 naming the new primary.
    const fenced = await request(cluster().url('shard1', 'primary', dataPath('set', keyOwnedBy('shard1', 2, 'fenced'), 'x')));
    expect(fenced.status).toBe(403);
    expect(fenced.json()).toMatchObject({ error: 'read_only_replica', primary: cluster().address('shard1', 'replica'), epoch: 2 });
    await waitFor('the old primary to report its role', async () => (await memberStatus(cluster(), 'shard1', 'primary'))['epoch']?.['epoch'] === 2);
  });
});
