// kvshard status, verify, check-config and failover against a running two-shard cluster, in table and
// JSON form, and the exit status of each outcome: 1 when a replica differs from its primary, 3 when no
// member answers, 4 for a token the nodes refuse, 5 for a failover the cluster declines, 0 for one done.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { runCli, type CliOptions } from '../helpers/cli.js';
import { configToml, dataPath, freePort, keyOwnedBy, request, testToken, useCluster } from '../helpers/cluster.js';
import { waitConverged } from '../helpers/replication.js';

const cluster = useCluster(2);
const wrongToken = { KV_CLUSTER_TOKEN: 'not-the-cluster-token-0123456789' };

function kvshard(args: string[], options: CliOptions = {}) {
  return runCli(args, { ...options, env: { KV_CONFIG: cluster().configPath, KV_DATA_DIR: cluster().dataDir, ...options.env } });
}

beforeAll(async () => {
  for (const shard of ['shard1', 'shard2']) {
    for (let i = 0; i < 3; i++) {
      expect((await request(cluster().url(shard, 'primary', dataPath('set', keyOwnedBy(shard, 2, `admin-${i}-`), 'v')))).status).toBe(200);
    }
    await waitConverged(cluster(), shard);
  }
});

describe('kvshard status', () => {
  it('shows every member in the status table and as JSON', async () => {
    const table = await kvshard(['status']);
    expect(table.code, table.stderr).toBe(0);
    for (const [shard, member, role] of [
      ['shard1', 'a', 'primary'],
      ['shard1', 'b', 'replica'],
      ['shard2', 'a', 'primary'],
      ['shard2', 'b', 'replica'],
    ] as const) {
      const address = cluster().address(shard, role);
      expect(table.stdout.toString()).toMatch(new RegExp(`${shard}\\s+${member}\\s+${address}\\s+${role}\\s+1\\s+up\\s+3\\s`));
    }
    // The same from one endpoint: the shards come from its cluster map, not from a config.
    const json = await kvshard(['status', '-o', 'json', '--endpoints', cluster().address('shard2', 'replica')], { env: { KV_CONFIG: '' } });
    expect(json.code, json.stderr).toBe(0);
    const members = JSON.parse(json.stdout.toString());
    expect(members).toHaveLength(4);
    expect(members[1]).toMatchObject({
      shard: 'shard1',
      member: 'b',
      address: cluster().address('shard1', 'replica'),
      state: 'up',
      role: 'replica',
      epoch: 1,
      keys: 3,
    });
    expect(members[1]).toHaveProperty('lag_entries');
  });

  it('exits 3 from status when no member answers, showing each as down', async () => {
    const config = join(cluster().dir, 'nobody.toml');
    const nobody = async () => `127.0.0.1:${await freePort()}`;
    writeFileSync(config, configToml([{ name: 'shard1', address: await nobody(), replica: await nobody() }]));
    const res = await kvshard(['status', '--config', config]);
    expect(res.code).toBe(3);
    expect(res.stdout.toString()).toMatch(/shard1\s+a\s+\S+\s+-\s+-\s+down/);
    expect(res.stderr).toBe('kvshard: unavailable: no member answers /status\n');
  });
});

describe('kvshard verify', () => {
  it('verifies equal replicas (exit 0) and a differing pair (exit 1), as lines and as JSON', async () => {
    const equal = await kvshard(['verify']);
    expect(equal.code, equal.stderr).toBe(0);
    expect(equal.stdout.toString()).toBe('shard1: equal (3 keys)\nshard2: equal (3 keys)\n');
    const json = JSON.parse((await kvshard(['verify', '-o', 'json'])).stdout.toString());
    expect(json).toMatchObject({
      equal: true,
      shards: [
        { shard: 'shard1', equal: true, keys: 3 },
        { shard: 'shard2', equal: true, keys: 3 },
      ],
    });

    // A config that pairs shard1's primary with shard2's: two real members whose data differ.
    const crossed = join(cluster().dir, 'crossed.toml');
    writeFileSync(crossed, configToml([{ name: 'shard1', address: cluster().address('shard1'), replica: cluster().address('shard2') }], '', testToken));
    const differs = await kvshard(['verify', '--config', crossed]);
    expect(differs.code).toBe(1);
    expect(differs.stdout.toString()).toMatch(/^shard1: DIFFERENT: first differing slot \d+/);
    const differsJson = await kvshard(['verify', '--config', crossed, '-o', 'json']);
    expect(differsJson.code).toBe(1);
    expect(JSON.parse(differsJson.stdout.toString())).toMatchObject({ equal: false, shards: [{ shard: 'shard1', equal: false, slot: expect.any(Number) }] });
  });

  it('exits 4 from verify and failover when the nodes refuse the token', async () => {
    const verify = await kvshard(['verify'], { env: wrongToken });
    expect(verify.code).toBe(4);
    expect(verify.stdout.toString()).toMatch(/^shard1: cannot compare: unauthorized: /);
    expect(verify.stderr).toMatch(/^kvshard: unauthorized: the cluster token does not match/);
    const failover = await kvshard(['failover', '--shard', 'shard1'], { env: wrongToken });
    expect(failover.code).toBe(4);
    expect(failover.stderr).toMatch(/^kvshard: unauthorized: /);
    expect((await kvshard(['status'])).stdout.toString()).toMatch(/shard1\s+a\s+\S+\s+primary\s+1\s+up/);
  });
});

describe('kvshard check-config and failover', () => {
  it('prints the config as lines and as JSON without its token, and exits 2 for a shard it does not have', async () => {
    const lines = await kvshard(['check-config']);
    expect(lines.stdout.toString()).toBe(
      cluster()
        .shards.map((s, i) => `${s.name} ${i} ${s.address} ${s.replica}\n`)
        .join(''),
    );
    const json = await kvshard(['check-config', '-o', 'json']);
    expect(JSON.parse(json.stdout.toString())).toMatchObject({
      shards: [
        { name: 'shard1', idx: 0 },
        { name: 'shard2', idx: 1 },
      ],
      token_set: true,
    });
    expect(json.stdout.toString()).not.toContain(testToken);
    const unknown = await kvshard(['failover', '--shard', 'shard9']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/^kvshard: usage: no shard named "shard9"/);
  });

  it('exits 5 for a failover the cluster refuses (its replica is down), and 0 with a JSON report for one done', async () => {
    await cluster().stop('shard2', 'replica');
    const refused = await kvshard(['failover', '--shard', 'shard2']);
    expect(refused.code, refused.stderr).toBe(5);
    expect(refused.stderr).toMatch(/^kvshard: failover_refused: shard2 .*no member serves as replica now/);

    const done = await kvshard(['failover', '--shard', 'shard1', '-o', 'json']);
    expect(done.code, done.stderr).toBe(0);
    expect(JSON.parse(done.stdout.toString())).toMatchObject({ primary: cluster().address('shard1', 'replica'), epoch: 2, kind: 'switchover' });
    // Member a serves as replica now: a second switchover moves shard1 back, reported as one line.
    const back = await kvshard(['failover', '--shard', 'shard1']);
    expect(back.code, back.stderr).toBe(0);
    expect(back.stdout.toString()).toContain(`shard1: ${cluster().address('shard1', 'primary')} is primary at epoch 3 (switchover`);
  });
});
