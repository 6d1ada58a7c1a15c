// Fencing without a coordinator (docs/failover.md): promotions count only once a majority of all nodes
// has stored a grant, grants survive kill -9, a primary cut off from the majority stops acknowledging
// writes, a sender's newer epoch is never turned into a guessed primary, a paused primary whose
// switchover went silent never resumes blindly, and a forced failover without a majority is refused
// unless asked for by name. Three shards (six nodes, a majority is four), node_timeout_ms of 1 s.
import { describe, expect, it } from 'vitest';
import { dataPath, keyOwnedBy, request, testToken, useCluster, waitFor } from '../helpers/cluster.js';
import { memberStatus, runFailover, waitRoles } from '../helpers/failover.js';

const cluster = useCluster(3, { extraToml: 'node_timeout_ms = 1000' });
const key = (shard: string, prefix: string) => keyOwnedBy(shard, 3, prefix);
const internal = { 'x-kv-token': testToken, 'content-type': 'application/json' };

async function write(shard: string, member: 'primary' | 'replica', k: string, value: string) {
  return request(cluster().url(shard, member, dataPath('set', k, value)));
}

async function grant(shard: string, member: 'primary' | 'replica', body: Record<string, unknown>): Promise<Record<string, any>> {
  const res = await request(cluster().url(shard, member, '/internal/grant'), { method: 'POST', headers: internal, body: JSON.stringify(body) });
  expect(res.status, res.text()).toBe(200);
  return res.json();
}

async function forwardedNewerEpoch(): Promise<void> {
  const layoutId = (await memberStatus(cluster(), 'shard1', 'primary'))['layout_id'];
  const res = await request(cluster().url('shard1', 'primary', dataPath('set', key('shard1', 'guess-'), 'x')), {
    headers: { 'x-kv-token': testToken, 'x-kv-forwarded-by': 'shard2/primary', 'x-kv-layout': layoutId, 'x-kv-epoch': '7' },
  });
  expect(res.status, res.text()).toBe(503);
  expect(res.json()).toMatchObject({ error: 'epoch_behind', retriable: true });
  const status = await memberStatus(cluster(), 'shard1', 'primary');
  expect(status['role']).toBe('primary');
  expect(status['epoch']).toMatchObject({ epoch: 1, primary: cluster().address('shard1', 'primary') });
  expect((await write('shard1', 'primary', key('shard1', 'after-guess-'), 'y')).status).toBe(200);
}

async function durableGrant(): Promise<void> {
  const a = cluster().address('shard3', 'primary');
  const b = cluster().address('shard3', 'replica');
  expect(await grant('shard2', 'primary', { shard: 'shard3', epoch: 2, candidate: b, kind: 'switchover' })).toMatchObject({ granted: true });
  await cluster().kill('shard2', 'primary');
  await cluster().start('shard2', 'primary');
  const second = await grant('shard2', 'primary', { shard: 'shard3', epoch: 2, candidate: a, kind: 'switchover' });
  expect(second).toMatchObject({ granted: false, code: 'granted_other' });
  expect(second['grants']['shard3']).toEqual({ epoch: 2, primary: b });
  // The same member again is granted (a retried request), and an epoch above is granted to anyone.
  expect(await grant('shard2', 'primary', { shard: 'shard3', epoch: 2, candidate: b, kind: 'switchover' })).toMatchObject({ granted: true });
  // The unused grant holds shard3's writes only until its member (b) says it was not promoted at epoch 2.
  await waitFor('shard3 takes writes again', async () => (await write('shard3', 'primary', key('shard3', 'after-grant-'), 'x')).status === 200);
  expect(cluster().output('shard3', 'primary')).toMatch(/was not promoted at epoch 2/);
}

async function minorityPrimary(): Promise<void> {
  const others = [
    ['shard2', 'primary'],
    ['shard2', 'replica'],
    ['shard3', 'primary'],
    ['shard3', 'replica'],
  ] as const;
  expect((await write('shard1', 'primary', key('shard1', 'before-cut-'), 'x')).status).toBe(200);
  for (const [shard, member] of others) await cluster().kill(shard, member);
  const refusals: string[] = [];
  try {
    const refused = await waitFor('shard1 refuses writes without a majority', async () => {
      const res = await write('shard1', 'primary', key('shard1', 'cut-'), 'x');
      if (res.status === 200) return undefined;
      const body = res.json();
      refusals.push(body.error);
      return body.error === 'no_majority' ? body : undefined;
    });
    expect(refused).toMatchObject({ error: 'no_majority', retriable: true });
    // A write admitted just before the fence rose and committed after it is answered as of unknown
    // outcome, never acknowledged; nothing else refuses on the way.
    expect(refusals.filter((e) => e !== 'no_majority' && e !== 'write_outcome_unknown')).toEqual([]);
    // Reads go on.
    expect((await request(cluster().url('shard1', 'primary', dataPath('get', key('shard1', 'before-cut-'))))).status).toBe(200);
  } finally {
    for (const [shard, member] of others) await cluster().start(shard, member, undefined, { ready: false });
  }
  await waitFor('shard1 takes writes again', async () => (await write('shard1', 'primary', key('shard1', 'healed-'), 'x')).status === 200);
}

async function silentSwitchover(): Promise<void> {
  // The failpoint holds the promoting member between the catch-up and the grants, while the old
  // primary is paused: the old primary is stopped there (SIGSTOP), so it never hears the new epoch.
  await cluster().stop('shard2', 'replica');
  await cluster().start('shard2', 'replica', undefined, { env: { KV_FAILPOINTS: 'failover-before-grants=2000' } });
  await waitRoles(cluster(), 'shard2', 'primary');
  const command = runFailover(cluster(), 'shard2');
  await waitFor('the old primary paused', () => /paused for a switchover/.test(cluster().output('shard2', 'primary')));
  cluster().suspend('shard2', 'primary');
  const result = await command;
  cluster().resume('shard2', 'primary');
  expect(result.code, result.stderr).toBe(6);
  expect(result.stderr).toContain(`the old primary ${cluster().address('shard2', 'primary')} did not hear of epoch 2`);
  // From now on the old primary acknowledges nothing: it learns epoch 2 (asking the new primary, or
  // from a heartbeat) and serves as replica.
  await waitFor('the old primary serves as replica', async () => {
    const res = await write('shard2', 'primary', key('shard2', 'old-'), 'x');
    expect(res.status, res.text()).not.toBe(200);
    return (await memberStatus(cluster(), 'shard2', 'primary'))['role'] === 'replica';
  });
  await waitRoles(cluster(), 'shard2', 'replica');
  const res = await write('shard2', 'replica', key('shard2', 'new-'), 'x');
  expect(res.status).toBe(200);
  expect(res.json()).toMatchObject({ epoch: 2 });
}

async function restartedMidSwitchover(): Promise<void> {
  // The old primary is killed right after it paused and comes straight back, while the promoting member
  // waits at the failpoint: the pause it stored makes it ask the member before it takes a write, and
  // the question calls the promotion off, so only one member ever takes writes. The member is frozen
  // (SIGSTOP) while the primary restarts, so the write below surely arrives before the answer.
  const c = cluster();
  await c.stop('shard3', 'replica');
  await c.start('shard3', 'replica', undefined, { env: { KV_FAILPOINTS: 'failover-before-grants=10000' } });
  await waitRoles(c, 'shard3', 'primary');
  const command = runFailover(c, 'shard3');
  await waitFor('the primary paused', () => /paused for a switchover/.test(c.output('shard3', 'primary')));
  await c.kill('shard3', 'primary');
  c.suspend('shard3', 'replica');
  let refused: Awaited<ReturnType<typeof write>>;
  try {
    await c.start('shard3', 'primary', undefined, { ready: false });
    refused = await write('shard3', 'primary', key('shard3', 'mid-'), 'x');
  } finally {
    c.resume('shard3', 'replica');
  }
  expect(refused!.status, refused!.text()).toBe(503);
  expect(refused!.json()).toMatchObject({ error: expect.stringMatching(/^(failover_unsettled|epoch_unconfirmed)$/) });
  const result = await command;
  expect(result.code, result.stderr).toBe(5);
  expect(result.stderr).toMatch(/called off/);
  await waitFor('the restarted primary takes writes again', async () => (await write('shard3', 'primary', key('shard3', 'after-'), 'x')).status === 200);
  expect(c.output('shard3', 'primary')).toMatch(/restarted during a switchover/);
  expect((await memberStatus(c, 'shard3', 'replica'))['role']).toBe('replica');
}

async function forcedWithoutMajority(): Promise<void> {
  const c = cluster();
  const down = [
    ['shard2', 'primary'],
    ['shard2', 'replica'],
    ['shard3', 'primary'],
    ['shard3', 'replica'],
  ] as const;
  for (const [shard, member] of down) await c.stop(shard, member);
  await c.kill('shard1', 'primary');
  const refused = await runFailover(c, 'shard1', true);
  expect(refused.code, refused.stdout).toBe(5);
  expect(refused.stderr).toMatch(/no majority/);
  expect(refused.stderr).toContain('--without-majority');
  expect((await memberStatus(c, 'shard1', 'replica'))['role']).toBe('replica');

  const forced = await runFailover(c, 'shard1', true, ['--without-majority']);
  expect(forced.code, forced.stderr).toBe(0);
  expect(forced.stdout).toContain('WITHOUT A MAJORITY');
  // The refused attempt stored grants of its own epoch (an unused grant burns its epoch), so this one is above it.
  const epoch = Number(/is primary at epoch (\d+)/.exec(forced.stdout)?.[1]);
  expect(epoch).toBeGreaterThan(1);
  // Alone, the new primary hears no majority either: it acknowledges nothing until the others return.
  const alone = await write('shard1', 'replica', key('shard1', 'alone-'), 'x');
  expect(alone.status, alone.text()).toBe(503);
  expect(alone.json()).toMatchObject({ error: 'no_majority' });
  for (const [shard, member] of down) await c.start(shard, member, undefined, { ready: false });
  const newer = ['n1', 'n2', 'n3'].map((p) => key('shard1', `newer-${p}-`));
  for (const k of newer) {
    const res = await waitFor(`a write of ${k} at the new epoch`, async () => {
      const r = await write('shard1', 'replica', k, `b:${k}`);
      return r.status === 200 ? r : undefined;
    });
    expect(res.json()).toMatchObject({ epoch });
  }

  // Both members restart, the new primary first down: the old one hears the new epoch from the majority
  // that the new primary told, so it comes back as replica and acknowledges nothing.
  await c.stop('shard1', 'replica');
  await c.start('shard1', 'primary', undefined, { ready: false });
  await waitFor('the old primary serves as replica', async () => (await memberStatus(c, 'shard1', 'primary'))['role'] === 'replica');
  expect((await write('shard1', 'primary', key('shard1', 'stale-'), 'a')).status).not.toBe(200);
  await c.start('shard1', 'replica', undefined, { ready: false });
  await waitRoles(c, 'shard1', 'replica');
  for (const k of newer) expect((await request(c.url('shard1', 'replica', dataPath('get', k)))).text()).toBe(`b:${k}`);
}

describe('fencing', () => {
  it('answers a forwarded write from a newer epoch with 503, and does not guess that the other member is primary', forwardedNewerEpoch);
  it('keeps a grant through kill -9: the granter refuses a second member at that epoch', durableGrant);
  it('stops a primary cut off from the majority from acknowledging writes, and lets it go on once it hears a majority again', minorityPrimary);
  it('keeps a switchover whose announcement never reached the old primary from resuming its writes', silentSwitchover);
  it('makes a primary restarted in the middle of a switchover ask for its outcome before it takes writes', restartedMidSwitchover);
  it(
    "refuses a forced failover without a majority, and with --without-majority and after a double restart keeps the newer primary's writes",
    forcedWithoutMajority,
  );
});
