// GET /metrics on every role (primary, replica, drain): promtool accepts what each serves, and the series
// follow what the cluster does. Traffic moves the request, forward, group-commit and replication series;
// a switchover moves the epoch, the roles and the failovers seen; a shrink moves the migration counters.

import { afterAll, expect, it } from 'vitest';
import { Cluster, dataPath, keyOwnedBy, request, waitFor } from '../helpers/cluster.js';
import { runFailover, waitRoles } from '../helpers/failover.js';
import { metricValue, promtoolCheck, promtoolUnavailable, scrape } from '../helpers/metrics.js';
import { loadKeys, slowMigration } from '../helpers/resize.js';

const unavailable = promtoolUnavailable();
const required = process.env['CI'] === 'true';
if (unavailable !== undefined && !required) console.log(`metrics.test.ts: promtool checks skipped: ${unavailable}`);

let cluster: Cluster | undefined;
afterAll(async () => {
  await cluster?.destroy();
});

/** promtool check metrics on `text` (a failure when CI=true has no promtool). */
function expectPromtoolAccepts(text: string, what: string): void {
  if (unavailable !== undefined) {
    if (required) throw new Error(`CI=true requires promtool, but ${unavailable}`);
    return;
  }
  const check = promtoolCheck(text);
  expect(check.output, `promtool check metrics on ${what}`).toBe('');
  expect(check.status, `promtool check metrics on ${what}: ${check.output}`).toBe(0);
}

const count = (text: string, labels: Record<string, string>) => metricValue(text, 'kvshard_http_request_duration_seconds_count', labels) ?? 0;

it('serves metrics that promtool accepts and that follow traffic, a failover and a shrink', async () => {
  cluster = await Cluster.create(3, undefined, slowMigration(200));
  await cluster.startAll();
  // Keys for the shrink at the end to move (written now: after the switchover, member a of shard1 is a replica).
  await loadKeys(cluster, 6_000);
  await checkTraffic(cluster);
  await checkSwitchover(cluster);
  await checkShrink(cluster);
});

/** Requests, forwards, group commits and replication, on shard1's primary and replica and shard2's primary. */
async function checkTraffic(c: Cluster): Promise<void> {
  const shard1 = c.address('shard1', 'primary');
  const shard1b = c.address('shard1', 'replica');
  const shard2 = c.address('shard2', 'primary');

  // Traffic: writes and reads of shard1's keys through shard2 (forwarded) and at shard1 itself.
  const before = { p: await scrape(shard1), fwd: await scrape(shard2) };
  const keys = Array.from({ length: 40 }, (_, i) => keyOwnedBy('shard1', 3, `m${i}-`));
  for (const key of keys) expect((await request(`http://${shard2}${dataPath('set', key, 'v')}`)).status).toBe(200);
  for (const key of keys) expect((await request(`http://${shard1}${dataPath('get', key)}`)).status).toBe(200);
  const missing = await request(`http://${shard1}${dataPath('get', keyOwnedBy('shard1', 3, 'missing-'))}`);
  expect(missing.status).toBe(404);
  expect(missing.headers.get('x-request-id')).toMatch(/^[0-9a-f]{8}-[0-9a-z]+$/);

  const p = await scrape(shard1);
  const fwd = await scrape(shard2);
  expect(count(p, { route: 'set', status_class: '2xx', role: 'primary' }) - count(before.p, { route: 'set', status_class: '2xx', role: 'primary' })).toBe(40);
  expect(count(p, { route: 'get', status_class: '2xx', role: 'primary' }) - count(before.p, { route: 'get', status_class: '2xx', role: 'primary' })).toBe(40);
  expect(count(p, { route: 'get', status_class: '4xx' })).toBeGreaterThanOrEqual(1);
  expect(metricValue(p, 'kvshard_http_errors_total', { code: 'not_found' })).toBeGreaterThanOrEqual(1);
  // Every request finished within the largest finite bucket's bound, and the buckets are cumulative.
  const setLabels = { route: 'set', status_class: '2xx', role: 'primary' };
  expect(metricValue(p, 'kvshard_http_request_duration_seconds_bucket', { ...setLabels, le: '+Inf' })).toBe(count(p, setLabels));
  const forwarded = (t: string) => metricValue(t, 'kvshard_forwarded_requests_total', { shard: 'shard1', outcome: 'answered' }) ?? 0;
  expect(forwarded(fwd) - forwarded(before.fwd)).toBe(40);
  const commits = (t: string) => metricValue(t, 'kvshard_group_commit_writes_sum') ?? 0;
  expect(commits(p) - commits(before.p)).toBeGreaterThanOrEqual(40);
  expect(metricValue(p, 'kvshard_group_commit_duration_seconds_count')).toBeGreaterThan(0);
  expect(metricValue(p, 'kvshard_keys')).toBeGreaterThanOrEqual(40);
  expect(metricValue(p, 'kvshard_lmdb_file_bytes')).toBeGreaterThan(0);
  expect(metricValue(p, 'kvshard_role', { role: 'primary' })).toBe(1);
  expect(metricValue(p, 'kvshard_build_info', { version: '0.1.0' })).toBe(1);
  expect(metricValue(p, 'kvshard_process_cpu_seconds_total')).toBeGreaterThan(0);
  const lastSeq = metricValue(p, 'kvshard_replication_last_seq')!;
  expect(lastSeq).toBeGreaterThanOrEqual(40);
  // The replica applies up to the primary's sequence, and both say so.
  await waitFor('the replica applies every write', async () => metricValue(await scrape(shard1b), 'kvshard_replication_applied_seq') === lastSeq);
  await waitFor('the primary sees its replica caught up', async () => metricValue(await scrape(shard1), 'kvshard_replication_lag_entries') === 0);
  const r = await scrape(shard1b);
  expect(metricValue(r, 'kvshard_role', { role: 'replica' })).toBe(1);
  expect(metricValue(r, 'kvshard_replication_connected')).toBe(1);
  expectPromtoolAccepts(p, 'a primary');
  expectPromtoolAccepts(r, 'a replica');
}

async function checkSwitchover(c: Cluster): Promise<void> {
  const shard1 = c.address('shard1', 'primary');
  const shard1b = c.address('shard1', 'replica');
  // A switchover: member b of shard1 becomes primary at epoch 2, and every node's metrics say so.
  const failover = await runFailover(c, 'shard1');
  expect(failover.code, failover.stderr).toBe(0);
  await waitFor('member b of shard1 serves as primary', async () => metricValue(await scrape(shard1b), 'kvshard_role', { role: 'primary' }) === 1);
  const promoted = await scrape(shard1b);
  expect(metricValue(promoted, 'kvshard_epoch', { shard: 'shard1' })).toBe(2);
  expect(metricValue(promoted, 'kvshard_failovers_seen_total', { shard: 'shard1' })).toBeGreaterThanOrEqual(1);
  await waitFor('member a of shard1 serves as replica', async () => metricValue(await scrape(shard1), 'kvshard_role', { role: 'replica' }) === 1);
  await waitFor('shard3 learns epoch 2 of shard1', async () => metricValue(await scrape(c.address('shard3')), 'kvshard_epoch', { shard: 'shard1' }) === 2);
  // And back, so that member a is primary again for the resize (the harness starts shards by member a).
  const back = await runFailover(c, 'shard1');
  expect(back.code, back.stderr).toBe(0);
  await waitRoles(c, 'shard1', 'primary');
  expect(metricValue(await scrape(shard1), 'kvshard_failovers_seen_total', { shard: 'shard1' })).toBeGreaterThanOrEqual(2);
}

async function checkShrink(c: Cluster): Promise<void> {
  // A shrink to two shards: shard3 drains into the others; its drain and the receivers count the keys.
  const drainAddress = c.address('shard3');
  const shard3Keys = metricValue(await scrape(drainAddress), 'kvshard_keys')!;
  await c.stopAll();
  c.reconfigure(c.shards.slice(0, 2));
  const drained = c.startDrain('shard3');
  await c.startAll();
  // The drain's /metrics while it runs (it exits once its keys have moved).
  const drain = await waitFor('the drain serves /metrics while migrating', async () => {
    const text = await scrape(drainAddress).catch(() => undefined);
    return text !== undefined && metricValue(text, 'kvshard_migration_active') === 1 ? text : undefined;
  });
  expect(metricValue(drain, 'kvshard_role', { role: 'drain' })).toBe(1);
  expect(metricValue(drain, 'kvshard_migration_slots_to_send')).toBeGreaterThan(0);
  expectPromtoolAccepts(drain, 'a drain');
  expect(await drained).toBe(0);
  const primaries = [c.address('shard1', 'primary'), c.address('shard2', 'primary')];
  const received = await Promise.all(primaries.map(async (a) => metricValue(await scrape(a), 'kvshard_migration_keys_received_total') ?? 0));
  expect(received.reduce((x, y) => x + y, 0)).toBe(shard3Keys);
}
