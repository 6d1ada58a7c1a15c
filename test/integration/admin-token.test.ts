// Admin commands find the cluster token where launch.sh keeps it ($KV_DATA_DIR/cluster.token) when
// neither the config nor the environment gives one, and a wrong token is reported as unauthorized (exit
// status 4), not as an HTTP client's error code. Nodes started without a token in the config read the
// same file.
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, cliPath, dataPath, request, testToken } from '../helpers/cluster.js';

const run = promisify(execFile);
let cluster: Cluster;

beforeAll(async () => {
  cluster = await Cluster.create(1);
  // The same layout without a token line: nodes and commands must find the token file.
  const shard = cluster.shards[0]!;
  writeFileSync(cluster.configPath, `[[shards]]\nname = "${shard.name}"\nidx = 0\naddress = "${shard.address}"\nreplica = "${shard.replica}"\n`);
});
afterAll(async () => {
  await cluster?.destroy();
});

function kvshard(args: string[], env: Record<string, string> = {}) {
  return run(process.execPath, [cliPath, ...args, '--config', cluster.configPath, '--data-dir', cluster.dataDir], {
    timeout: 30_000,
    env: { ...process.env, KV_CLUSTER_TOKEN: '', ...env },
  }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (err: { code: number; stdout: string; stderr: string }) => ({ code: err.code, stdout: err.stdout, stderr: err.stderr }),
  );
}

describe('the cluster token for admin commands', () => {
  it('refuses to start a node with no token anywhere, naming where it looked', async () => {
    const res = await kvshard(['serve', '--shard', 'shard1']);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain(join(cluster.dataDir, 'cluster.token'));
  });

  it('is read from the data dir by nodes and by verify', async () => {
    mkdirSync(cluster.dataDir, { recursive: true, mode: 0o700 });
    writeFileSync(join(cluster.dataDir, 'cluster.token'), `${testToken}\n`, { mode: 0o600 });
    await cluster.startAll();
    expect((await request(cluster.url('shard1', 'primary', dataPath('set', 'k', 'v')))).status).toBe(200);
    const verify = await kvshard(['verify']);
    expect(verify.stdout).toMatch(/^shard1: (equal|DIFFERENT)/);
  });

  it('reports a wrong token as unauthorized', async () => {
    const res = await kvshard(['verify'], { KV_CLUSTER_TOKEN: 'a-wrong-token-of-some-length' });
    expect(res.code).toBe(4);
    expect(res.stdout).toMatch(/^shard1: cannot compare: unauthorized: the cluster token does not match/);
    expect(res.stderr).toMatch(/^kvshard: unauthorized: the cluster token does not match/);
    expect(res.stdout).not.toContain('ERR_BAD_REQUEST');
  });
});
