// A switchover (`kvshard failover`, both members up) under a 32-way write load: the replica takes over
// at the next epoch, the old primary follows it, no acknowledged write is lost, and switching back
// works the same way. The old primary, now a replica, refuses a client's write with 403 naming the new
// primary, and a node that was down during the switchover learns the new epoch when it starts again.

import { describe, expect, it } from 'vitest';
import { dataPath, keyOwnedBy, request, useCluster } from '../helpers/cluster.js';
import { memberStatus, runFailover, waitRoles, type Member } from '../helpers/failover.js';

const cluster = useCluster(2);

/**
 * 32 workers write their own keys of shard1 until stopped, half through shard2's primary (which
 * forwards) and half straight to shard1's primary; a worker told 403 by a member that is no longer
 * primary goes to the primary the answer names, as a client does. Acknowledged writes are kept.
 */
function writeLoad(stop: { now: boolean }) {
  const acked = new Map<string, string>();
  const refusals = new Map<string, number>();
  const workers = Array.from({ length: 32 }, async (_, worker) => {
    let target = cluster().address(worker % 2 === 0 ? 'shard2' : 'shard1', 'primary');
    for (let i = 0; !stop.now && i < 5_000; i++) {
      const key = keyOwnedBy('shard1', 2, `sw-${worker}-${i}-`);
      const value = `v${worker}-${i}`;
      const res = await request(`http://${target}${dataPath('set', key, value)}`).catch(() => undefined);
      if (res?.status === 200) {
        acked.set(key, value);
        continue;
      }
      const body = res?.json();
      const code = res ? `${res.status} ${body?.error}` : 'no answer';
      refusals.set(code, (refusals.get(code) ?? 0) + 1);
      if (res?.status === 403 && typeof body?.primary === 'string') target = body.primary;
      // A client retries a refused write after a little while: these answers are retriable.
      else await new Promise((r) => setTimeout(r, 20));
    }
  });
  return { acked, refusals, done: Promise.all(workers) };
}

async function expectAllReadable(acked: Map<string, string>, member: Member): Promise<void> {
  let missing = 0;
  for (const [key, value] of acked) {
    const res = await request(cluster().url('shard1', member, dataPath('get', key)));
    if (res.status !== 200 || res.text() !== value) missing++;
  }
  expect(missing, `${missing} of ${acked.size} acknowledged writes missing on the ${member} member`).toBe(0);
}

describe('switchover', () => {
  it('hands the primary role to the replica under write load, losing no acknowledged write, and back', async () => {
    const stop = { now: false };
    const load = writeLoad(stop);
    while (load.acked.size < 500) await new Promise((r) => setTimeout(r, 20));

    const first = await runFailover(cluster(), 'shard1');
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toContain(`${cluster().address('shard1', 'replica')} is primary at epoch 2`);
    const atSwitch = load.acked.size;
    while (load.acked.size < atSwitch + 500) await new Promise((r) => setTimeout(r, 20));
    stop.now = true;
    await load.done;
    console.log(`switchover under load: ${first.stdout.trim()}; ${load.acked.size} writes acknowledged, refusals ${JSON.stringify([...load.refusals])}`);
    // Only the answers a switchover gives: the pause, and a replica naming the new primary.
    for (const code of load.refusals.keys()) expect(['503 failover_in_progress', '403 read_only_replica']).toContain(code);

    await waitRoles(cluster(), 'shard1', 'replica');
    await expectAllReadable(load.acked, 'replica');
    const status = await memberStatus(cluster(), 'shard1', 'replica');
    expect(status['epoch']).toMatchObject({ epoch: 2, primary: cluster().address('shard1', 'replica'), kind: 'switchover' });

    // The old primary is a replica now: a client's write gets 403 naming the new primary and epoch.
    const refused = await request(cluster().url('shard1', 'primary', dataPath('set', keyOwnedBy('shard1', 2, 'direct'), 'x')));
    expect(refused.status).toBe(403);
    expect(refused.json()).toMatchObject({ error: 'read_only_replica', primary: cluster().address('shard1', 'replica'), epoch: 2 });
    expect(refused.headers.get('x-kv-role')).toBe('replica');

    // A node down during the next switchover learns of it when it starts again, and forwards there.
    await cluster().stop('shard2', 'primary');
    const back = await runFailover(cluster(), 'shard1');
    expect(back.code, back.stderr).toBe(0);
    expect(back.stdout).toContain(`${cluster().address('shard1', 'primary')} is primary at epoch 3`);
    // Right after the command, while the old primary may still be changing roles, ack=replica waits for it
    // instead of answering replica_unavailable.
    const acked = await request(cluster().url('shard1', 'primary', dataPath('set', keyOwnedBy('shard1', 2, 'right-after'), 'r', '&ack=replica')));
    expect(acked.status, acked.text()).toBe(200);
    await cluster().start('shard2', 'primary');
    const key = keyOwnedBy('shard1', 2, 'after-restart');
    const forwarded = await request(cluster().url('shard2', 'primary', dataPath('set', key, 'v')));
    expect(forwarded.status, forwarded.text()).toBe(200);
    const learned = await memberStatus(cluster(), 'shard2', 'primary');
    expect(learned['epochs']['shard1']).toMatchObject({ epoch: 3, primary: cluster().address('shard1', 'primary') });
    await waitRoles(cluster(), 'shard1', 'primary');
    await expectAllReadable(new Map([...load.acked, [key, 'v']]), 'primary');
  });

  it('refuses a failover of a member that is primary already, changing nothing', async () => {
    const res = await request(cluster().url('shard2', 'primary', '/internal/failover'), {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-kv-token': 'local-cluster-token-0123456789' },
      body: '{}',
    });
    expect(res.status).toBe(409);
    expect(res.json()).toMatchObject({ error: 'failover_refused', shard: 'shard2' });
  });

  it('refuses to pause a primary for a switchover asked at another epoch, and keeps taking writes', async () => {
    const pause = (body: string) =>
      request(cluster().url('shard2', 'primary', '/internal/failover/pause'), {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-kv-token': 'local-cluster-token-0123456789' },
        body,
      });
    const epoch = (await memberStatus(cluster(), 'shard2', 'primary'))['epoch']['epoch'] as number;
    const stale = await pause(JSON.stringify({ epoch: epoch + 5 }));
    expect(stale.status).toBe(409);
    expect(stale.json()).toMatchObject({ error: 'failover_refused', shard: 'shard2', epoch });
    expect((await pause('{}')).status).toBe(400);
    expect((await pause(JSON.stringify({ epoch: 'one' }))).status).toBe(400);
    // Not paused: a paused primary answers writes 503 failover_in_progress; this one takes them.
    const key = keyOwnedBy('shard2', 2, 'unpaused-');
    const write = await request(cluster().url('shard2', 'primary', dataPath('set', key, 'v')));
    expect(write.status, write.text()).toBe(200);
  });
});
