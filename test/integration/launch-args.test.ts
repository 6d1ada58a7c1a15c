// launch.sh checks every argument before it builds, writes or starts anything: a role other than primary
// or replica, arguments beyond SHARD and ROLE, arguments to verify, an unknown command and wait times
// that are not whole seconds are each named on stderr, with exit status 2.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster } from '../helpers/cluster.js';

const launch = resolve(import.meta.dirname, '../../launch.sh');
const run = promisify(execFile);

let cluster: Cluster;
let env: NodeJS.ProcessEnv;
beforeAll(async () => {
  cluster = await Cluster.create(1);
  env = { ...process.env, KV_CONFIG: cluster.configPath, KV_DATA_DIR: cluster.dataDir };
});
afterAll(async () => {
  await run(launch, ['stop'], { env, timeout: 30_000 }).catch(() => undefined);
  await cluster?.destroy();
});

interface Outcome {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs launch.sh with `args`, resolving with its exit code and output whether it fails or not. */
function launchSh(args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<Outcome> {
  return run(launch, args, { env, timeout: 60_000, ...options }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (err: { code: number; stdout: string; stderr: string }) => ({ code: err.code, stdout: err.stdout, stderr: err.stderr }),
  );
}

describe('launch.sh arguments', () => {
  it('refuses a role other than primary or replica, naming it, and creates nothing', async () => {
    for (const command of ['start', 'stop', 'status', 'restart']) {
      const refused = await launchSh([command, 'shard1', 'master']);
      expect(refused, command).toMatchObject({ code: 2, stdout: '' });
      expect(refused.stderr, command).toContain("unknown role 'master' (expected primary or replica)");
    }
    expect(existsSync(cluster.dataDir)).toBe(false);
  });

  it('refuses an empty shard name and arguments beyond SHARD and ROLE, naming them', async () => {
    const empty = await launchSh(['status', '']);
    expect(empty).toMatchObject({ code: 2, stdout: '' });
    expect(empty.stderr).toContain('empty shard name');
    const extra = await launchSh(['start', 'shard1', 'primary', 'now', 'please']);
    expect(extra).toMatchObject({ code: 2, stdout: '' });
    expect(extra.stderr).toContain("unexpected argument(s) 'now please' after SHARD and ROLE");
    expect(existsSync(cluster.dataDir)).toBe(false);
  });

  it('refuses arguments to verify, naming them', async () => {
    const refused = await launchSh(['verify', 'shard1']);
    expect(refused).toMatchObject({ code: 2, stdout: '' });
    expect(refused.stderr).toContain("verify takes no arguments, got 'shard1'");
  });

  it('names an unknown command before the usage', async () => {
    const refused = await launchSh(['frobnicate']);
    expect(refused).toMatchObject({ code: 2, stdout: '' });
    expect(refused.stderr).toMatch(/^launch\.sh: unknown command 'frobnicate'\n/);
    expect(refused.stderr).toContain('./launch.sh [start|stop|status|restart] [SHARD [primary|replica]]');
  });

  it('refuses wait times that are not whole seconds, naming the variable and its value', async () => {
    const refused = await launchSh(['stop'], { env: { ...env, KV_STOP_WAIT_S: '1.5' } });
    expect(refused).toMatchObject({ code: 2, stdout: '' });
    expect(refused.stderr).toContain("KV_STOP_WAIT_S must be a whole number of seconds, got '1.5'");
  });
});
