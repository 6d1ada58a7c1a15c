// Automatic failover through etcd leases, with a real etcd (Debian's etcd-server, started by this file)
// and real nodes. One shard: kill -9 of its primary under write load, and the other member takes writes
// with no command, at a higher epoch, keeping every ack=replica write; the old primary comes back as its
// replica. Three shards: the same for one of them while the others go on; then a switchover through
// etcd under write load, and --force refused while the primary holds its lease. etcd stopped for longer
// than the lease: writes stop, reads go on, and writes resume once etcd is back, never two members in
// one epoch. A replica further behind than max_lag_on_failover when its primary dies does not campaign,
// says why, and the shard waits for its old primary. A primary restarted within its lease keeps it.
// etcd losing its data moves the epoch on, never back.
// The dashboard's state names the lease.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { etcdUnavailable, LocalEtcd } from '../../src/harness/local-etcd.js';
import { Cluster, dataPath, keyOwnedBy, request, waitFor } from '../helpers/cluster.js';
import { runCli } from '../helpers/cli.js';
import { memberStatus, runFailover } from '../helpers/failover.js';
import { needsTool } from '../helpers/tool-gate.js';

const unavailable = etcdUnavailable();
const runs = needsTool('coordinator-failover.test.ts', 'the etcd tests', unavailable);

const leaseTtlMs = 2000;
type Member = 'primary' | 'replica';

interface Ack {
  readonly member: Member;
  readonly key: string;
  readonly epoch: number;
  readonly at: number;
}

async function write(c: Cluster, shard: string, member: Member, key: string, ack = 'replica') {
  return request(c.url(shard, member, dataPath('set', key, `v-${key}`, `&ack=${ack}`))).catch(() => undefined);
}

/**
 * Writes to whichever member of `shard` takes them, in turn, until `stop()` says so; records every
 * acknowledgement. Writes are acknowledged once the replica has them (`ack=replica`) until `alone()`:
 * then, with one member left, once the primary has them.
 */
function writeLoad(c: Cluster, shard: string, shardCount: number, acks: Ack[]): { stop: () => Promise<void>; alone: () => void } {
  let running = true;
  let ack = 'replica';
  const done = (async () => {
    for (let i = 0; running && i < 100_000; i++) {
      const key = keyOwnedBy(shard, shardCount, `load-${i}-`);
      for (const member of ['primary', 'replica'] as const) {
        const reply = await write(c, shard, member, key, ack);
        if (reply?.status === 200) {
          acks.push({ member, key, epoch: reply.json().epoch, at: performance.now() });
          break;
        }
      }
    }
  })();
  return {
    stop: async () => {
      running = false;
      await done;
    },
    alone: () => {
      ack = 'primary';
    },
  };
}

/** No two members acknowledged writes of `shard` at one epoch. */
function expectOneWriterPerEpoch(acks: readonly Ack[]): void {
  const writers = new Map<number, Set<Member>>();
  for (const a of acks) writers.set(a.epoch, (writers.get(a.epoch) ?? new Set()).add(a.member));
  for (const [epoch, members] of writers) expect([...members], `epoch ${epoch}`).toHaveLength(1);
}

async function startCoordinated(shardCount: number, etcd: LocalEtcd, prefix = `/kvshard/t${shardCount}`, extra = '', ttlMs = leaseTtlMs): Promise<Cluster> {
  const c = await Cluster.create(shardCount, undefined, etcd.coordinatorToml({ leaseTtlMs: ttlMs, prefix, more: extra }));
  // Destroyed by afterAll even when starting it fails.
  clusters.push(c);
  await c.startAll();
  for (const s of c.shards)
    await waitFor(`${s.name}'s primary holds its key`, async () => (await memberStatus(c, s.name, 'primary')).coordinator?.holds_key === true);
  return c;
}

async function killUnderLoad(c: Cluster, shard: string, shardCount: number): Promise<void> {
  const acks: Ack[] = [];
  const load = writeLoad(c, shard, shardCount, acks);
  try {
    await waitFor('writes acknowledged before the kill', () => acks.length >= 20);
    const before = acks.length;
    const killedAt = performance.now();
    await c.kill(shard, 'primary');
    load.alone();
    const first = await waitFor('a write acknowledged by the other member', () => acks.find((a) => a.member === 'replica'), 60_000);
    console.log(`${shard}: first write acknowledged by the other member ${Math.round(first.at - killedAt)} ms after kill -9 (lease_ttl_ms ${leaseTtlMs})`);
    await waitFor('more writes on the new primary', () => acks.filter((a) => a.member === 'replica').length >= 20);
    await load.stop();
    expect(before).toBeGreaterThan(0);
    expect(first.epoch).toBeGreaterThan(acks[0]!.epoch);
    expectOneWriterPerEpoch(acks);
    // Every acknowledged write is on the new primary: those before the kill with ack=replica, those after on it.
    for (const a of acks) {
      const got = await request(c.url(shard, 'replica', dataPath('get', a.key)));
      expect(got.status, `${a.key}, acknowledged by ${a.member} at epoch ${a.epoch}`).toBe(200);
    }
    expect((await memberStatus(c, shard, 'replica')).role).toBe('primary');
    // The old primary comes back as the new primary's replica.
    await c.start(shard, 'primary', undefined, { ready: false });
    await waitFor('the old primary serves as replica', async () => (await memberStatus(c, shard, 'primary')).role === 'replica');
  } finally {
    await load.stop();
  }
}

let etcd: LocalEtcd;
const clusters: Cluster[] = [];

async function oneShard(): Promise<void> {
  const c = await startCoordinated(1, etcd);
  const metrics = (await request(c.url('shard1', 'primary', '/metrics'))).text();
  expect(metrics).toMatch(/^kvshard_coordinator_holds_key 1$/m);
  expect(metrics).toMatch(/^kvshard_lease_remaining_seconds \d/m);
  expect(metrics).toMatch(/^kvshard_primary_info\{shard="shard1",primary="[^"]+",kind="lease_expired"\} 1$/m);
  const status = await runCli(['status', '--config', c.configPath, '-o', 'json']);
  expect(status.code, status.stderr).toBe(0);
  const members = JSON.parse(status.stdout.toString('utf8')) as { role: string; lease: { holds_key: boolean } | null }[];
  expect(members.find((m) => m.role === 'primary')?.lease?.holds_key).toBe(true);
  expect((await runCli(['status', '--config', c.configPath])).stdout.toString('utf8')).toMatch(
    /since epoch \d+: lease_expired at \S+ \(holds its key in etcd, lease/,
  );
  const dashboard = await waitFor('the dashboard has sampled every member', async () => {
    const state = (await request(c.url('shard1', 'primary', '/dashboard/state'))).json();
    return state.shards[0].members.every((m: { up: boolean }) => m.up) ? state : undefined;
  });
  expect(dashboard.shards[0]).toMatchObject({ epoch_kind: 'lease_expired', epoch_at: expect.any(String) });
  const holder = dashboard.shards[0].members.find((m: { role: string }) => m.role === 'primary');
  expect(holder.coordinator).toMatchObject({ holds_key: true, lease_remaining_ms: expect.any(Number) });
  await killUnderLoad(c, 'shard1', 1);
}

async function threeShards(): Promise<void> {
  const c = await startCoordinated(3, etcd);
  await killUnderLoad(c, 'shard2', 3);
  const other = await write(c, 'shard1', 'primary', keyOwnedBy('shard1', 3, 'other-'));
  expect(other?.status).toBe(200);
}

async function switchover(): Promise<void> {
  const c = clusters[1]!;
  // After the kill, shard2's member b is primary and a its replica.
  await waitFor("shard2's old primary is in sync", async () => (await memberStatus(c, 'shard2', 'primary')).in_sync === true);
  const forced = await runFailover(c, 'shard2', true);
  expect(forced.code, forced.stdout + forced.stderr).not.toBe(0);
  const acks: Ack[] = [];
  const load = writeLoad(c, 'shard2', 3, acks);
  try {
    await waitFor('writes acknowledged before the switchover', () => acks.length >= 10);
    const before = acks.at(-1)!.epoch;
    const done = await runFailover(c, 'shard2');
    expect(done.code, done.stdout + done.stderr).toBe(0);
    expect(done.stdout).toMatch(/is primary at epoch \d+ \(switchover/);
    await waitFor('writes acknowledged by member a again', () => acks.find((a) => a.member === 'primary' && a.epoch > before));
    await load.stop();
    expectOneWriterPerEpoch(acks);
    for (const a of acks) expect((await request(c.url('shard2', 'primary', dataPath('get', a.key)))).status, a.key).toBe(200);
    expect((await memberStatus(c, 'shard2', 'primary')).coordinator?.holds_key).toBe(true);
  } finally {
    await load.stop();
  }
}

async function etcdAway(): Promise<void> {
  const c = clusters[0]!;
  // After the first test, shard1's member b is primary.
  const key = keyOwnedBy('shard1', 1, 'etcd-away-');
  expect((await write(c, 'shard1', 'replica', key))?.status).toBe(200);
  const acks: Ack[] = [];
  await etcd.stop();
  try {
    const stoppedAt = performance.now();
    // A write admitted just before the lease's margin ran out and committed after it is answered
    // write_outcome_unknown (never success); the refusals after it are lease_expired.
    const refused = await waitFor('a write refused for want of a live lease', async () => {
      const reply = await write(c, 'shard1', 'replica', keyOwnedBy('shard1', 1, 'while-away-'));
      if (reply?.status === 200) acks.push({ member: 'replica', key: 'x', epoch: reply.json().epoch, at: performance.now() });
      if (reply?.status === 503 && reply.json().error === 'write_outcome_unknown') return undefined;
      return reply?.status === 503 ? reply : undefined;
    });
    expect(refused.json(), refused.text()).toMatchObject({ error: 'lease_expired', retriable: true });
    expect(performance.now() - stoppedAt).toBeLessThan(leaseTtlMs + 30_000);
    // Reads go on.
    expect((await request(c.url('shard1', 'replica', dataPath('get', key)))).status).toBe(200);
    expect((await request(c.url('shard1', 'primary', dataPath('get', key)))).status).toBe(200);
  } finally {
    // The later tests need etcd whatever happened here.
    await etcd.run();
  }
  const resumed = await waitFor('writes resume once etcd is back', async () => {
    for (const member of ['primary', 'replica'] as const) {
      const reply = await write(c, 'shard1', member, keyOwnedBy('shard1', 1, 'after-'));
      if (reply?.status === 200) return { member, epoch: reply.json().epoch as number };
    }
    return undefined;
  });
  acks.push({ ...resumed, key: 'after', at: performance.now() });
  expectOneWriterPerEpoch(acks);
}

/** Writes `count` keys to `member` of shard1, `parallel` at a time, each acknowledged by the primary alone. */
async function backlog(c: Cluster, member: Member, count: number, parallel = 8): Promise<void> {
  let next = 0;
  const one = async () => {
    for (let i = next++; i < count; i = next++) {
      const reply = await write(c, 'shard1', member, keyOwnedBy('shard1', 1, `backlog-${i}-`), 'primary');
      expect(reply?.status, `backlog write ${i}`).toBe(200);
    }
  };
  await Promise.all(Array.from({ length: parallel }, one));
}

async function laggingReplica(): Promise<void> {
  const maxLag = 100;
  const c = await startCoordinated(1, etcd, '/kvshard/lag', `max_lag_on_failover = ${maxLag}\n`);
  // The replica misses a backlog of several replication batches (2,000 entries each), then applies each
  // batch slowly: it stays far behind for seconds. It completed its first copy first, so lag alone holds it back.
  await waitFor('the replica is in sync', async () => (await memberStatus(c, 'shard1', 'replica')).in_sync === true);
  await c.kill('shard1', 'replica');
  await backlog(c, 'primary', 6_000);
  await c.start('shard1', 'replica', undefined, { ready: false, env: { KV_FAILPOINTS: 'replica-apply=2000' } });
  const behind = await waitFor(
    'the replica reports its lag',
    async () => {
      const lag = (await memberStatus(c, 'shard1', 'replica').catch(() => undefined))?.lag_entries;
      return typeof lag === 'number' && lag > maxLag ? lag : undefined;
    },
    60_000,
  );
  const epoch = (await memberStatus(c, 'shard1', 'primary')).epoch.epoch as number;
  await c.kill('shard1', 'primary');
  const waiting = await waitFor(
    'the replica declines the vacant key',
    async () => {
      const reason: unknown = (await memberStatus(c, 'shard1', 'replica')).coordinator?.waiting;
      return typeof reason === 'string' && !reason.includes('left to the primary first') ? reason : undefined;
    },
    30_000,
  );
  console.log(`the replica was ${behind} entries behind at the kill; it says it waits: ${waiting}`);
  expect(waiting).toMatch(new RegExp(`entries behind its primary at the last contact \\(max_lag_on_failover is ${maxLag}\\)`));
  const replica = await memberStatus(c, 'shard1', 'replica');
  expect(replica.role).toBe('replica');
  expect(replica.coordinator.holds_key).toBe(false);
  expect((await write(c, 'shard1', 'replica', keyOwnedBy('shard1', 1, 'refused-')))?.status).not.toBe(200);
  // The old primary comes back and takes its shard again, at a higher epoch; the replica never served.
  await c.start('shard1', 'primary', undefined, { ready: false });
  const resumed = await waitFor('the old primary takes writes again', async () => {
    const reply = await write(c, 'shard1', 'primary', keyOwnedBy('shard1', 1, 'resumed-'), 'primary');
    return reply?.status === 200 ? (reply.json().epoch as number) : undefined;
  });
  expect(resumed).toBeGreaterThan(epoch);
  expect((await memberStatus(c, 'shard1', 'replica')).role).toBe('replica');
  expect((await memberStatus(c, 'shard1', 'primary')).epochs.shard1.primary).toBe(c.shards[0]!.address);
}

/**
 * A primary killed and started again within its lease keeps its lease and its key: it takes writes again
 * at the same epoch, and its replica never takes the shard. The lease is long, so that the restart
 * surely comes within it.
 */
async function restartWithinLease(): Promise<void> {
  const c = await startCoordinated(1, etcd, '/kvshard/restart', '', 30_000);
  const before = await write(c, 'shard1', 'primary', keyOwnedBy('shard1', 1, 'before-'));
  expect(before?.status).toBe(200);
  const epoch = before!.json().epoch as number;
  await c.kill('shard1', 'primary');
  await c.start('shard1', 'primary', undefined, { ready: false });
  const after = await waitFor('the restarted primary takes writes', async () => {
    const reply = await write(c, 'shard1', 'primary', keyOwnedBy('shard1', 1, 'after-'));
    return reply?.status === 200 ? reply : undefined;
  });
  expect(after.json().epoch).toBe(epoch);
  expect(c.output('shard1', 'primary')).toContain('kept its etcd lease from before the restart');
  expect((await memberStatus(c, 'shard1', 'replica')).role).toBe('replica');
}

/**
 * etcd loses its data: every lease and key, and the epoch counter. The primary, whose lease etcd forgot,
 * takes the key again at once, at an epoch above the one it held (the campaign raises the counter
 * first); its replica leaves it a whole lease's time to do so.
 */
async function etcdDataLost(): Promise<void> {
  const c = await startCoordinated(1, etcd, '/kvshard/wiped');
  const before = await write(c, 'shard1', 'primary', keyOwnedBy('shard1', 1, 'before-wipe-'));
  expect(before?.status).toBe(200);
  const epoch = before!.json().epoch as number;
  await etcd.wipe();
  const after = await waitFor('writes resume after the wipe', async () => {
    const reply = await write(c, 'shard1', 'primary', keyOwnedBy('shard1', 1, 'after-wipe-'));
    return reply?.status === 200 && (reply.json().epoch as number) > epoch ? (reply.json().epoch as number) : undefined;
  });
  expect(after).toBeGreaterThan(epoch);
  expect((await memberStatus(c, 'shard1', 'replica')).role).toBe('replica');
  expect((await request(c.url('shard1', 'replica', dataPath('get', keyOwnedBy('shard1', 1, 'before-wipe-'))))).status).toBe(200);
}

describe.skipIf(!runs)('automatic failover through etcd leases', () => {
  beforeAll(async () => {
    etcd = await LocalEtcd.start();
  });
  afterAll(async () => {
    for (const c of clusters) await c.destroy();
    await etcd?.close();
  });

  it('replaces a killed primary of a one-shard cluster with no command', oneShard);
  it('replaces a killed primary of a three-shard cluster while the other shards go on', threeShards);
  it('switches a shard over through etcd under write load, losing nothing, and refuses --force while the primary holds its lease', switchover);
  it('stops writes while etcd is away for longer than the lease, goes on reading, and resumes writes when it returns', etcdAway);
  it('leaves the shard to its old primary when the replica was further behind than max_lag_on_failover', laggingReplica);
  it('lets a primary restarted within its lease keep its key and its epoch', restartWithinLease);
  // Last: the wipe takes every other cluster's keys too.
  it('goes on at a higher epoch, on the same primary, when etcd loses its data', etcdDataLost);
});
