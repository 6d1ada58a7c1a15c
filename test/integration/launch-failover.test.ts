// `./launch.sh failover SHARD` on a cluster launch.sh started: the replica member becomes primary,
// `status` shows which member is primary now and the last failover, and restarting the shard's members
// afterwards keeps their roles (each rejoins in the role the cluster gives it). A bad argument exits 2.
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, dataPath, keyOwnedBy, request } from '../helpers/cluster.js';

const launch = resolve(import.meta.dirname, '../../launch.sh');
const run = promisify(execFile);

let cluster: Cluster;
let env: NodeJS.ProcessEnv;
beforeAll(async () => {
  cluster = await Cluster.create(2);
  env = { ...process.env, KV_CONFIG: cluster.configPath, KV_DATA_DIR: cluster.dataDir };
});
afterAll(async () => {
  await run(launch, ['stop'], { env, timeout: 30_000 }).catch(() => undefined);
  await cluster?.destroy();
});

describe('launch.sh failover', () => {
  it('switches a shard over, shows it in status, and keeps the roles across a restart', async () => {
    await run(launch, ['start'], { env, timeout: 60_000 });
    const key = keyOwnedBy('shard1', 2, 'lf');
    expect((await request(cluster.url('shard2', 'primary', dataPath('set', key, 'before')))).status).toBe(200);

    const done = await run(launch, ['failover', 'shard1'], { env, timeout: 60_000 });
    expect(done.stdout).toContain(`shard1: ${cluster.address('shard1', 'replica')} is primary at epoch 2 (switchover`);

    const status = await run(launch, ['status'], { env, timeout: 30_000 });
    // MEMBER (place in the file), ADDRESS, ROLE now, EPOCH.
    expect(status.stdout).toMatch(new RegExp(`shard1\\s+b\\s+${cluster.address('shard1', 'replica')}\\s+primary\\s+2\\s+up`));
    expect(status.stdout).toMatch(new RegExp(`shard1\\s+a\\s+${cluster.address('shard1', 'primary')}\\s+replica\\s+2\\s+up`));
    expect(status.stdout).toMatch(/last failovers:\nshard1: primary \S+ since epoch 2: switchover at /);

    await run(launch, ['restart', 'shard1'], { env, timeout: 90_000 });
    const after = await run(launch, ['status'], { env, timeout: 30_000 });
    expect(after.stdout).toMatch(new RegExp(`shard1\\s+b\\s+${cluster.address('shard1', 'replica')}\\s+primary\\s+2\\s+up`));
    // A single member by its name: b stays primary across its own restart, since the epochs say so.
    await run(launch, ['restart', 'shard1', 'b'], { env, timeout: 90_000 });
    const again = await run(launch, ['status', 'shard1', 'b'], { env, timeout: 30_000 });
    expect(again.stdout).toMatch(new RegExp(`shard1\\s+b\\s+${cluster.address('shard1', 'replica')}\\s+primary\\s+2\\s+up`));
    const write = await request(cluster.url('shard2', 'primary', dataPath('set', key, 'after')));
    expect(write.status, write.text()).toBe(200);
    expect((await request(cluster.url('shard1', 'replica', dataPath('get', key)))).text()).toBe('after');
  });

  it('refuses a failover without a shard, or with an unknown option, with status 2', async () => {
    for (const args of [['failover'], ['failover', 'shard1', '--now']]) {
      const failed = await run(launch, args, { env, timeout: 30_000 }).then(
        () => undefined,
        (err: { code: number; stderr: string }) => err,
      );
      expect(failed?.code).toBe(2);
    }
  });
});
