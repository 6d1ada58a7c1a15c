// Campaigns for a shard's primary key against a real etcd (Debian's etcd-server, started by this file):
// the first member takes the key at the next epoch, a second loses and learns the holder, the key lives
// while its lease is kept alive and goes with it when the holder resigns or its lease lapses, the
// counter never falls below an epoch a member already holds, and a campaign that read a stale counter
// loses even when nobody holds the key. A client notices etcd's revision going back (its data lost).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { campaign, campaignOutcome, type Counter, decodeCounter, decodeHolder, shardKeys } from '../../src/cluster/coordinator.js';
import { EtcdClient } from '../../src/peer/etcd-client.js';
import { etcdUnavailable, LocalEtcd } from '../../src/harness/local-etcd.js';
import { needsTool } from '../helpers/tool-gate.js';

const unavailable = etcdUnavailable();
const runs = needsTool('etcd-campaign.test.ts', 'the etcd tests', unavailable);

const a = '127.0.0.1:7001';
const b = '127.0.0.1:7002';
const keys = shardKeys('/kvshard/test', 'shard1');

describe.skipIf(!runs)('campaigns for a shard in etcd', () => {
  let etcd: LocalEtcd;
  let client: EtcdClient;
  const abort = new AbortController();
  beforeAll(async () => {
    etcd = await LocalEtcd.start();
    // The first endpoint answers nothing: calls go on to the next one.
    client = new EtcdClient({ endpoints: ['127.0.0.1:1', etcd.endpoint], timeoutMs: 2_000, signal: abort.signal });
  });
  afterAll(async () => {
    abort.abort();
    client?.close();
    await etcd?.close();
  });

  const counter = async (): Promise<Counter> => decodeCounter(await client.get(keys.epoch));
  async function run(member: string, known: number, lease: string, read?: Counter) {
    const attempt = campaign(keys, member, known, read ?? (await counter()), lease);
    return campaignOutcome(attempt, await client.txn(attempt.txn));
  }

  it('gives the key to one member at a time, at epochs that only rise', async () => {
    const leaseA = await client.grantLease(2);
    const leaseB = await client.grantLease(2);
    expect(await run(a, 1, leaseA)).toEqual({ won: true, epoch: 2 });
    const lost = await run(b, 1, leaseB);
    expect(lost).toMatchObject({ won: false, holder: { member: a, epoch: 2 }, counter: { epoch: 2 } });
    expect(await client.keepAlive(leaseA)).toBeGreaterThan(0);

    // The holder resigns: the key goes with its lease, and the other member takes the next epoch.
    await client.revoke(leaseA);
    expect(await client.get(keys.primary)).toBeUndefined();
    expect(await client.keepAlive(leaseA)).toBe(0);
    expect(await run(b, 2, leaseB)).toEqual({ won: true, epoch: 3 });
    expect(decodeHolder(await client.get(keys.primary))).toEqual({ member: b, epoch: 3 });

    // Nobody keeps b's lease alive: etcd deletes the key once the lease lapses.
    const deadline = Date.now() + 30_000;
    while ((await client.get(keys.primary)) !== undefined) {
      if (Date.now() > deadline) throw new Error("the lapsed lease's key was not deleted within 30 s");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(await client.keepAlive(leaseB)).toBe(0);

    // A member that holds epoch 7 (etcd's data was lost, or the cluster ran without etcd) campaigns:
    // the counter is raised past it.
    const leaseA2 = await client.grantLease(5);
    const stale = await counter();
    expect(await run(a, 7, leaseA2, stale)).toEqual({ won: true, epoch: 8 });
    expect(await counter()).toMatchObject({ epoch: 8 });

    // The key is freed, but b read the counter before a's campaign: its transaction's compare fails.
    await client.revoke(leaseA2);
    const leaseB2 = await client.grantLease(5);
    const late = await run(b, 3, leaseB2, stale);
    expect(late).toMatchObject({ won: false, holder: undefined, counter: { epoch: 8 } });
    expect(await run(b, 3, leaseB2)).toEqual({ won: true, epoch: 9 });
    await client.revoke(leaseB2);
  });

  it('fails a call at once with a clear error when no endpoint answers', async () => {
    const dead = new EtcdClient({ endpoints: ['127.0.0.1:1'], timeoutMs: 1_000, signal: abort.signal });
    try {
      await expect(dead.grantLease(2)).rejects.toThrow(/no etcd endpoint answered \/v3\/lease\/grant/);
    } finally {
      dead.close();
    }
  });

  // Last: the wipe empties etcd for every test of this file.
  it("notes when etcd's revision goes back: its data was lost or restored", async () => {
    await client.get(keys.epoch);
    expect(client.revisionWentBackAt).toBeUndefined();
    await etcd.wipe();
    await client.get(keys.epoch);
    expect(client.revisionWentBackAt).toBeGreaterThan(0);
  });
});
