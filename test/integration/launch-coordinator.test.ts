// `./launch.sh` with a [coordinator] config whose etcd endpoint is a loopback address where nothing
// answers: it starts a local etcd there (data under $KV_DATA_DIR/etcd), the shards' primaries take their
// keys and writes, `status` shows who holds each key, and `./launch.sh stop` stops the nodes and then
// that etcd, by its recorded PID.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { etcdUnavailable } from '../../src/harness/local-etcd.js';
import { Cluster, dataPath, freePort, keyOwnedBy, request, waitFor } from '../helpers/cluster.js';
import { memberStatus } from '../helpers/failover.js';
import { needsTool } from '../helpers/tool-gate.js';

const launch = resolve(import.meta.dirname, '../../launch.sh');
const run = promisify(execFile);
const unavailable = etcdUnavailable();
const runs = needsTool('launch-coordinator.test.ts', 'the etcd tests', unavailable);

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

describe.skipIf(!runs)('launch.sh with a coordinator', () => {
  let cluster: Cluster;
  let env: NodeJS.ProcessEnv;
  let endpoint: string;
  beforeAll(async () => {
    // launch.sh gives etcd's peer port the client port's next one: both must be free.
    let port = await freePort();
    for (let tries = 0; port >= 65535 || !(await portFree(port + 1)); tries++) {
      if (tries > 100) throw new Error('no two free ports in a row');
      port = await freePort();
    }
    endpoint = `127.0.0.1:${port}`;
    cluster = await Cluster.create(2, undefined, `[coordinator]\netcd = ["${endpoint}"]\nlease_ttl_ms = 2000\n`);
    env = { ...process.env, KV_CONFIG: cluster.configPath, KV_DATA_DIR: cluster.dataDir };
  });
  afterAll(async () => {
    await run(launch, ['stop'], { env, timeout: 60_000 }).catch(() => undefined);
    await cluster?.destroy();
  });

  it('starts a local etcd, serves writes once each primary holds its key, stops etcd with the cluster, and keeps the primaries through a restart', async () => {
    const started = await run(launch, ['start'], { env, timeout: 120_000 });
    expect(started.stdout).toContain(`started etcd at ${endpoint}`);
    const pidFile = join(cluster.dataDir, 'etcd', 'pid');
    const pid = Number(readFileSync(pidFile, 'utf8'));
    expect(pid).toBeGreaterThan(0);
    for (const s of cluster.shards) {
      await waitFor(`${s.name}'s primary holds its key`, async () => (await memberStatus(cluster, s.name, 'primary')).coordinator?.holds_key === true);
      const key = keyOwnedBy(s.name, 2, 'lc');
      const reply = await request(cluster.url(s.name, 'primary', dataPath('set', key, 'v')));
      expect(reply.status, reply.text()).toBe(200);
      expect(reply.json().epoch).toBeGreaterThan(1);
    }
    // A second start finds etcd answering and uses it as it is.
    const again = await run(launch, ['start'], { env, timeout: 120_000 });
    expect(again.stdout).not.toContain('started etcd');

    const stopped = await run(launch, ['stop'], { env, timeout: 60_000 });
    expect(stopped.stdout).toContain(`stopped etcd (pid ${pid})`);
    expect(existsSync(pidFile)).toBe(false);
    expect(() => process.kill(pid, 0)).toThrow();

    // Stopped and started whole, the cluster keeps every shard's primary (no replica took a key a stopping
    // primary released) and every key.
    await run(launch, ['start'], { env, timeout: 120_000 });
    for (const s of cluster.shards) {
      await waitFor(`${s.name}'s primary holds its key again`, async () => (await memberStatus(cluster, s.name, 'primary')).coordinator?.holds_key === true);
      expect((await memberStatus(cluster, s.name, 'replica')).role).toBe('replica');
      expect((await request(cluster.url(s.name, 'primary', dataPath('get', keyOwnedBy(s.name, 2, 'lc'))))).text()).toBe('v');
    }
    const again2 = await run(launch, ['stop'], { env, timeout: 60_000 });
    expect(again2.stdout).toContain('stopped etcd');
  });
});
