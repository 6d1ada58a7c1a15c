// A switchover of a shard while a resize moves its keys away: the new primary carries on sending where
// the old one stood (the progress is replicated), the other shards send to and accept from whichever
// member is primary now, and no key is lost.
import { afterAll, expect, it } from 'vitest';
import { Cluster, dataPath, keyOwnedBy, ownerOf, request, waitFor } from '../helpers/cluster.js';
import { memberStatus, runFailover, waitRoles, type Member } from '../helpers/failover.js';
import { initialKey, loadKeys, slowMigration } from '../helpers/resize.js';

const keyCount = 10_000;
let cluster: Cluster | undefined;
afterAll(async () => {
  await cluster?.destroy();
});

/** The member of `shard` that serves as primary now. */
async function primaryMember(c: Cluster, shard: string): Promise<Member> {
  return (await memberStatus(c, shard, 'primary').catch(() => undefined))?.['role'] === 'primary' ? 'primary' : 'replica';
}

it('switches over a shard that is sending keys to a new shard, losing none', async () => {
  cluster = await Cluster.create(3, undefined, slowMigration(300));
  const c = cluster;
  await c.startAll();
  await loadKeys(c, keyCount);
  const before = [...c.shards];
  await c.stopAll();
  c.reconfigure([...before, await Cluster.extraShard(3)]);
  await c.startAll();

  // Once shard1 has sent part of its slots, its replica takes over.
  await waitFor('shard1 to have sent some slots', async () => {
    const m = (await memberStatus(c, 'shard1', 'primary'))['migration'];
    return m && m['slots_sent'] > 50 && m['state'] === 'migrating';
  });
  const switched = await runFailover(c, 'shard1');
  expect(switched.code, switched.stderr).toBe(0);
  // The new primary took the migration over where the old one stood.
  const taken = (await memberStatus(c, 'shard1', 'replica'))['migration'];
  expect(taken?.['state'], JSON.stringify(taken)).toBe('migrating');
  expect(taken['slots_sent']).toBeLessThan(taken['slots_to_send']);
  const written = keyOwnedBy('shard1', 4, 'during');
  const write = await request(c.url('shard2', 'primary', dataPath('set', written, 'w')));
  expect(write.status, write.text()).toBe(200);

  let last: unknown[] = [];
  await waitFor(
    'every shard to finish the migration',
    async () => {
      const statuses = await Promise.all(c.shards.map(async (shard) => memberStatus(c, shard.name, await primaryMember(c, shard.name))));
      last = statuses.map((s) => ({ shard: s['shard'], address: s['address'], decided: s['layout']?.['decided'], migration: s['migration'] }));
      return statuses.every((s) => s['layout']?.['decided'] && s['migration']?.['state'] === 'done');
    },
    120_000,
  ).catch((err: Error) => {
    throw new Error(`${err.message}: ${JSON.stringify(last)}\n${c.output('shard1', 'primary').slice(-3000)}\n${c.output('shard1', 'replica').slice(-3000)}`);
  });
  await waitRoles(c, 'shard1', 'replica');

  // Roles are settled now: read every key from its owner's primary, 32 at a time.
  const primaries = new Map<string, Member>();
  for (const shard of c.shards) primaries.set(shard.name, await primaryMember(c, shard.name));
  const missing: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (next < keyCount) {
        const i = next++;
        const key = initialKey(i);
        const owner = ownerOf(key, 4);
        const res = await request(c.url(owner, primaries.get(owner)!, dataPath('get', key)));
        if ((res.status !== 200 || res.text() !== `v${i}`) && missing.length < 20) missing.push(`${key}: ${res.status} ${res.text().slice(0, 80)}`);
      }
    }),
  );
  expect(missing).toEqual([]);
  expect((await request(c.url('shard1', 'replica', dataPath('get', written)))).text()).toBe('w');
}, 300_000);
