// launch.sh starts every process in the config in the background, waits for /health and prints a table;
// status reports up/down; stop signals only the PIDs it recorded. A node that cannot start makes start
// fail with the tail of its log. What it writes (data dir, logs, PID files) only its user may read, and
// it forgets the PID file of a process that has exited, such as a drain that finished.
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, dataPath, request } from '../helpers/cluster.js';

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

/** launch.sh's name of the member the harness calls `primary` (a, at `address`) or `replica` (b). */
const member = (role: string) => (role === 'primary' ? 'a' : role === 'replica' ? 'b' : role);

function pidOf(shard: string, role: string): number {
  return Number(readFileSync(join(cluster.dataDir, 'run', `${shard}-${member(role)}.pid`), 'utf8'));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Runs `launch.sh start ...args`, expecting it to fail; resolves with its exit code and stderr. */
async function expectStartFails(...args: string[]): Promise<{ code: number; stderr: string }> {
  const failed = await run(launch, ['start', ...args], { env, timeout: 60_000 }).then(
    () => undefined,
    (err: { code: number; stderr: string }) => err,
  );
  expect(failed, 'launch.sh start should have failed').toBeDefined();
  expect(failed!.code).not.toBe(0);
  return failed!;
}

// biome-ignore lint/complexity/noExcessiveLinesPerFunction: a describe() suite, not a function: its tests share one setup
describe('launch.sh', () => {
  it('starts, reports and stops the cluster', async () => {
    const started = await run(launch, ['start'], { env, timeout: 60_000 });
    for (const [shard, role] of cluster.nodes()) {
      expect(started.stdout).toMatch(new RegExp(`${shard}\\s+${member(role)}\\s+${cluster.address(shard, role)}\\s+\\d+\\s+up`));
    }
    expect((await request(cluster.url('shard1', 'primary', dataPath('set', 'launched', 'yes')))).status).toBe(200);
    expect((await request(cluster.url('shard2', 'primary', dataPath('get', 'launched')))).text()).toBe('yes');

    const pids = cluster.nodes().map(([shard, role]) => pidOf(shard, role));
    const stopped = await run(launch, ['stop', 'shard2', 'b'], { env, timeout: 30_000 });
    expect(stopped.stdout).toContain('stopped 1 process(es)');
    const status = await run(launch, ['status'], { env, timeout: 30_000 });
    expect(status.stdout).toMatch(/shard2\s+b\s+\S+\s+-\s+down/);
    expect(status.stdout).toMatch(/shard1\s+a\s+\S+\s+\d+\s+up/);

    await run(launch, ['stop'], { env, timeout: 30_000 });
    for (const pid of pids) expect(alive(pid)).toBe(false);
  });

  it('does not mistake another kvshard already on the port for the node it started', async () => {
    // A node started outside launch.sh holds shard2's primary port and answers /health itself.
    await cluster.start('shard2', 'primary', undefined, { ready: false });
    try {
      const failed = await expectStartFails('shard2', 'a');
      // The node started outside launch.sh holds both the port and shard2's data dir.
      expect(failed.stderr).toMatch(/the data dir \S+shard2-a is in use by PID \d+/);
    } finally {
      await cluster.stop('shard2', 'primary');
    }
  });

  it('fails with the tail of the log when a node cannot start', async () => {
    const [host, port] = cluster.address('shard1', 'replica').split(':');
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(Number(port), host, r));
    try {
      const failed = await expectStartFails('shard1', 'b');
      expect(failed.stderr).toContain('shard1 b failed to start');
      expect(failed.stderr).toContain(`cannot listen on ${cluster.address('shard1', 'replica')}: the address is already in use by another process`);
      expect(failed.stderr).not.toMatch(/\n\s+at /);
    } finally {
      blocker.close();
    }
  });

  it('keeps the data dir, logs and PID files private to the user, also those made before', async () => {
    const own = await Cluster.create(1);
    const ownEnv = { ...process.env, KV_CONFIG: own.configPath, KV_DATA_DIR: own.dataDir };
    // A data dir and a log left world-readable by an earlier version, and a caller with the usual umask.
    mkdirSync(join(own.dataDir, 'logs'), { recursive: true });
    chmodSync(own.dataDir, 0o755);
    chmodSync(join(own.dataDir, 'logs'), 0o755);
    writeFileSync(join(own.dataDir, 'logs', 'shard1-a.log'), 'an earlier run\n', { mode: 0o644 });
    chmodSync(join(own.dataDir, 'logs', 'shard1-a.log'), 0o644);
    try {
      await run('bash', ['-c', 'umask 022 && exec "$0" start shard1 a', launch], { env: ownEnv, timeout: 60_000 });
      const mode = (...path: string[]) => (statSync(join(own.dataDir, ...path)).mode & 0o777).toString(8);
      expect({
        dataDir: mode(),
        run: mode('run'),
        logs: mode('logs'),
        earlierLog: mode('logs', 'shard1-a.log'),
        log: mode('logs', 'shard1-a.1.log'),
        out: mode('logs', 'shard1-a.out'),
        pid: mode('run', 'shard1-a.pid'),
      }).toEqual({ dataDir: '700', run: '700', logs: '700', earlierLog: '600', log: '600', out: '600', pid: '600' });
    } finally {
      await run(launch, ['stop'], { env: ownEnv, timeout: 30_000 });
      await own.destroy();
    }
  });

  it('removes the PID file of a drain that finished', async () => {
    await run(launch, ['start'], { env, timeout: 60_000 });
    cluster.reconfigure(cluster.shards.slice(0, 1));
    const restarted = await run(launch, ['restart'], { env, timeout: 90_000 });
    expect(restarted.stdout).toMatch(/shard2 is no longer in .*: draining its keys/);
    const drain = pidOf('shard2', 'drain');
    const deadline = Date.now() + 60_000;
    while (alive(drain) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(alive(drain), 'the drain of shard2 should have finished').toBe(false);

    const status = await run(launch, ['status'], { env, timeout: 30_000 });
    expect(status.stdout).not.toMatch(/shard2/);
    expect(readdirSync(join(cluster.dataDir, 'run')).sort()).toEqual(['shard1-a.pid', 'shard1-b.pid']);
  });
});
