// The documented resize procedure end to end: edit sharding.toml, ./launch.sh restart. Growing starts
// the new shard and moves keys to it; shrinking stops every recorded process (also the removed
// shard's), drains the removed shard and retires its data dirs.
import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster } from '../helpers/cluster.js';
import { get, loadKeys, waitMigrated } from '../helpers/resize.js';

const launch = resolve(import.meta.dirname, '../../launch.sh');
const run = promisify(execFile);
const keyCount = 2_000;
// A bound, not a target: each step restarts every process (launch.sh waits up to 90 s) and moves keys,
// which took up to a minute on a loaded 2-core machine.
const resizeTestTimeoutMs = 240_000;

let cluster: Cluster;
let env: NodeJS.ProcessEnv;
beforeAll(async () => {
  cluster = await Cluster.create(3);
  env = { ...process.env, KV_CONFIG: cluster.configPath, KV_DATA_DIR: cluster.dataDir };
  await run(launch, ['start'], { env, timeout: 60_000 });
  await cluster.waitLayoutDecided();
  await loadKeys(cluster, keyCount);
});
afterAll(async () => {
  await run(launch, ['stop'], { env, timeout: 30_000 }).catch(() => undefined);
  await cluster?.destroy();
});

async function expectAllKeys(): Promise<void> {
  for (let i = 0; i < keyCount; i += 3) {
    const shard = cluster.shards[i % cluster.shards.length]!;
    expect(await get(shard.replica, `/get?key=k${i}`)).toEqual({ status: 200, body: `v${i}` });
  }
}

describe('resizing with launch.sh restart', () => {
  it(
    'grows to 4 shards',
    async () => {
      const three = [...cluster.shards];
      cluster.reconfigure([...three, await Cluster.extraShard(3)]);
      const restarted = await run(launch, ['restart'], { env, timeout: 90_000 });
      expect(restarted.stdout).toMatch(/shard4\s+a\s+\S+\s+\d+\s+up/);
      const statuses = await waitMigrated(cluster);
      expect(statuses[3]!['keys']).toBeGreaterThan(keyCount * 0.15);
      const status = await run(launch, ['status'], { env, timeout: 30_000 });
      expect(status.stdout).toMatch(/MIGRATION/);
      expect(status.stdout).toMatch(/shard4\s+a\s+\S+\s+primary\s+1\s+up\s+\d+.*done \d{4}-/);
      await expectAllKeys();
    },
    resizeTestTimeoutMs,
  );

  it(
    'shrinks back to 3 shards, draining the removed one',
    async () => {
      cluster.reconfigure(cluster.shards.slice(0, 3));
      const restarted = await run(launch, ['restart'], { env, timeout: 90_000 });
      expect(restarted.stdout).toContain('stopped 8 process(es)');
      expect(restarted.stdout).toMatch(/shard4 is no longer in .*: draining its keys/);
      const deadline = Date.now() + 60_000;
      while (existsSync(join(cluster.dataDir, 'shard4-a')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      expect(readdirSync(join(cluster.dataDir, 'retired'))).toHaveLength(1);
      await waitMigrated(cluster);
      await expectAllKeys();
      const status = await run(launch, ['status'], { env, timeout: 30_000 });
      expect(status.stdout).not.toMatch(/shard4/);
    },
    resizeTestTimeoutMs,
  );
});
