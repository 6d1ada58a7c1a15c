// launch.sh checks every argument before it builds, writes or starts anything: a member other than a
// or b (with a hint for the role names earlier versions took), arguments beyond SHARD and MEMBER, arguments to verify, an unknown command and wait times
// that are not whole seconds are each named on stderr, with exit status 2. Relative KV_CONFIG and
// KV_DATA_DIR name paths from the caller's directory, as any other command line path does, and a config
// that cannot be read is reported with the absolute path looked at.
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
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
  it('refuses a member other than a or b, naming it, and creates nothing', async () => {
    for (const command of ['start', 'stop', 'status', 'restart']) {
      const refused = await launchSh([command, 'shard1', 'master']);
      expect(refused, command).toMatchObject({ code: 2, stdout: '' });
      expect(refused.stderr, command).toContain("unknown member 'master' (expected a or b)");
    }
    // The role names earlier versions took get the member they meant, since roles change with a failover.
    const legacy = await launchSh(['stop', 'shard1', 'replica']);
    expect(legacy).toMatchObject({ code: 2, stdout: '' });
    expect(legacy.stderr).toContain("members are named a and b, since a failover swaps roles: 'shard1 b' is the member at shard1's replica");
    expect(existsSync(cluster.dataDir)).toBe(false);
  });

  it('refuses an empty shard name and arguments beyond SHARD and MEMBER, naming them', async () => {
    const empty = await launchSh(['status', '']);
    expect(empty).toMatchObject({ code: 2, stdout: '' });
    expect(empty.stderr).toContain('empty shard name');
    const extra = await launchSh(['start', 'shard1', 'a', 'now', 'please']);
    expect(extra).toMatchObject({ code: 2, stdout: '' });
    expect(extra.stderr).toContain("unexpected argument(s) 'now please' after SHARD and MEMBER");
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
    expect(refused.stderr).toContain('./launch.sh [start|stop|status|restart] [SHARD [a|b]]');
  });

  it('refuses wait times that are not whole seconds, naming the variable and its value', async () => {
    const refused = await launchSh(['stop'], { env: { ...env, KV_STOP_WAIT_S: '1.5' } });
    expect(refused).toMatchObject({ code: 2, stdout: '' });
    expect(refused.stderr).toContain("KV_STOP_WAIT_S must be a whole number of seconds, got '1.5'");
  });

  it("resolves relative KV_CONFIG and KV_DATA_DIR against the caller's directory", async () => {
    // A name the repository has no file of, so that resolving it against the repository cannot work.
    copyFileSync(cluster.configPath, join(cluster.dir, 'relative.toml'));
    const relative = { ...process.env, KV_CONFIG: 'relative.toml', KV_DATA_DIR: 'data' };
    const started = await launchSh(['start', 'shard1', 'a'], { env: relative, cwd: cluster.dir });
    expect(started.stderr).toBe('');
    expect(started.code).toBe(0);
    expect(started.stdout).toMatch(new RegExp(`shard1\\s+a\\s+${cluster.address('shard1')}\\s+\\d+\\s+up`));
    expect(existsSync(join(cluster.dataDir, 'run', 'shard1-a.pid'))).toBe(true);
    const stopped = await launchSh(['stop'], { env: relative, cwd: cluster.dir });
    expect(stopped).toMatchObject({ code: 0, stdout: 'stopped 1 process(es)\n' });
  });

  it('reports the absolute path of a config it cannot read', async () => {
    const missing = await launchSh(['status'], { env: { ...env, KV_CONFIG: 'missing.toml' }, cwd: cluster.dir });
    expect(missing).toMatchObject({ code: 2, stdout: '' });
    expect(missing.stderr).toContain(`cannot read the config ${join(cluster.dir, 'missing.toml')} (KV_CONFIG=missing.toml)`);
    // stop without a shard needs only the PID files, so a cluster whose config has gone can still be stopped.
    const stopped = await launchSh(['stop'], { env: { ...env, KV_CONFIG: 'missing.toml' }, cwd: cluster.dir });
    expect(stopped).toMatchObject({ code: 0, stdout: 'stopped 0 process(es)\n' });
  });

  it('takes --overwrite-replica for member a of one shard only, and passes it to that member', async () => {
    for (const args of [
      ['start', '--overwrite-replica'],
      ['start', 'shard1', '--overwrite-replica'],
      ['start', 'shard1', 'b', '--overwrite-replica'],
    ]) {
      const refused = await launchSh(args);
      expect(refused.code).toBe(2);
      expect(refused.stderr).toContain('--overwrite-replica goes with member a of one shard');
    }
    const started = await launchSh(['start', 'shard1', 'a', '--overwrite-replica']);
    expect(started.code, started.stderr).toBe(0);
    const log = readFileSync(join(cluster.dataDir, 'logs', 'shard1-a.1.log'), 'utf8');
    expect(log).toContain('started with --overwrite-replica');
    await launchSh(['stop']);
  });
});
