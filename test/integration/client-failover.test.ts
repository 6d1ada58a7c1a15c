// A KvClient under a running workload while shards fail over: a switchover of shard1, then kill -9 of
// shard2's primary and a forced failover. The client is given one endpoint at the start and nothing
// after: it finds each new primary itself. No error reaches the caller (its deadline covers the outage;
// writes in flight at the kill are sent again) but the one the server must give: shard2's ack=replica
// writes, while it has no replica, are committed on its new primary only (replica_unavailable,
// committed_on_primary),
// every acknowledged ack=replica write reads back, and every ack=primary write of shard2 is on the new
// primary or in the old primary's rollback file, never in neither. (A write in flight at the kill may be
// in both: applied by the old primary before it died and again by the client's retry on the new one.)

import { afterAll, expect, it } from 'vitest';
import { KvClient } from '../../src/client/index.js';
import { ownerOf, useCluster, waitFor } from '../helpers/cluster.js';
import { ClientLoop } from '../helpers/client-loop.js';
import { lastRollbackFile, memberStatus, runFailover, waitRoles } from '../helpers/failover.js';

const cluster = useCluster(3);
let client: KvClient | undefined;
afterAll(async () => {
  await client?.close();
});

it('follows a switchover and a forced failover with no help and no error, losing no ack=replica write', async () => {
  client = new KvClient({ endpoints: [cluster().address('shard3')], timeoutMs: 30_000, retries: 200 });
  const loop = new ClientLoop(client, 'f');
  await loop.progress(300);

  const switched = await runFailover(cluster(), 'shard1');
  expect(switched.code, switched.stderr).toBe(0);
  await loop.progress(300);
  expect((await client.cluster()).shards[0]!.primary).toBe(cluster().address('shard1', 'replica'));

  // The switchover cost the caller nothing: its writes waited out the handover.
  expect(loop.errors).toEqual([]);
  await cluster().kill('shard2', 'primary');
  const forced = await runFailover(cluster(), 'shard2', true);
  expect(forced.code, forced.stderr).toBe(0);
  const shard2Acked = () => [...loop.acked.keys()].filter((k) => ownerOf(k, 3) === 'shard2').length;
  const before = shard2Acked();
  await waitFor('writes to shard2 acknowledged after the forced failover', () => shard2Acked() >= before + 100, 60_000);
  await loop.stop();
  expect(loop.errors).toEqual([]);
  expect(loop.wrong).toEqual([]);
  expect(loop.reads).toBeGreaterThan(100);
  // Without a replica until its old primary rejoins, shard2 can only commit ack=replica writes on the primary, and says so.
  expect(loop.committedWithoutReplica).toBeGreaterThan(0);
  const map = await client.cluster();
  expect(map.shards.map((s) => [s.primary, s.epoch])).toEqual([
    [cluster().address('shard1', 'replica'), 2],
    [cluster().address('shard2', 'replica'), 2],
    [cluster().address('shard3', 'primary'), 1],
  ]);

  // The old primary of shard2 rejoins as its replica, writing what the new primary lacks to its rollback file.
  await cluster().start('shard2', 'primary', undefined, { ready: false });
  await waitRoles(cluster(), 'shard2', 'replica');
  const rolled = lastRollbackFile(await memberStatus(cluster(), 'shard2', 'primary'))?.writes ?? new Map<string, string>();
  const keys = [...loop.acked.keys()];
  const values = await client.getMany(keys);
  const lost: string[] = [];
  const doubled: string[] = [];
  keys.forEach((key, i) => {
    const { value, ack } = loop.acked.get(key)!;
    const present = values[i]?.toString() === value;
    const inRollback = rolled.get(key) === value;
    if (present && inRollback) doubled.push(key);
    if (!present && (ack === 'replica' || !inRollback)) lost.push(`${key} (ack=${ack}): ${values[i]?.toString() ?? 'absent'}`);
  });
  expect(lost).toEqual([]);
  // Only a write in flight at the kill can be in both, and each writer had one at most.
  expect(doubled.length).toBeLessThanOrEqual(8);
  console.log(
    `client failover: ${keys.length} writes acknowledged, ${loop.reads} reads, ${rolled.size} in the rollback file, ${doubled.length} of them also retried onto the new primary`,
  );
}, 180_000);
