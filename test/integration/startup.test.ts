// Starting a node: one process per data dir, a clear refusal when the data dir or the address is taken,
// and files only its user can read. A second `kvshard serve` on a running node's data dir (here with a
// config that moved the shard's address, as a stray copy would) exits 2 naming the dir and the PID that
// holds it; after kill -9 the lock is free again at once. An address in use is one line and exit 2, and
// a data dir created for nothing is removed again. Data dirs are 700 and their files 600. Data dirs an
// earlier version named by role (<shard>-primary, -replica) are renamed after their member (-a, -b).
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readdirSync, renameSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cliPath, configToml, dataPath, freePort, request, useCluster } from '../helpers/cluster.js';
import { waitConverged } from '../helpers/replication.js';

const cluster = useCluster(1);

function serve(config: string, dataDir: string, ...extra: string[]) {
  return spawnSync(process.execPath, [cliPath, 'serve', '--config', config, '--shard', 'shard1', '--data-dir', dataDir, ...extra], {
    encoding: 'utf8',
    timeout: 30_000,
    env: { ...process.env, KV_CLUSTER_TOKEN: '' },
  });
}

const mode = (path: string) => (statSync(path).mode & 0o777).toString(8);

// biome-ignore lint/complexity/noExcessiveLinesPerFunction: a describe() suite, not a function: its tests share one setup
describe('start-up', () => {
  it('refuses a second process on a running node data dir, naming the PID, and the cluster() serves on', async () => {
    const moved = join(cluster().dir, 'moved.toml');
    writeFileSync(moved, configToml([{ ...cluster().shards[0]!, address: `127.0.0.1:${await freePort()}` }]));
    const second = serve(moved, cluster().dataDir);
    expect(second.status).toBe(2);
    const pid = cluster().pid('shard1', 'primary');
    expect(second.stderr.trim()).toBe(
      `kvshard: cannot_start: the data dir ${join(cluster().dataDir, 'shard1-a')} is in use by PID ${pid} (kvshard shard1 primary at ${cluster().address('shard1')}); one data dir serves one process at a time`,
    );
    expect((await request(cluster().url('shard1', 'primary', dataPath('set', 'still', 'here')))).status).toBe(200);
    expect((await request(cluster().url('shard1', 'replica', '/status'))).json()['layout']['refusing']).toBeNull();
  });

  it('frees the lock when the holder is killed with -9', async () => {
    await cluster().kill('shard1', 'primary');
    await cluster().start('shard1', 'primary');
    expect((await request(cluster().url('shard1', 'primary', dataPath('get', 'still')))).text()).toBe('here');
  });

  it('answers an address in use with one line and exit 2, and removes the data dir it created', async () => {
    const port = await freePort();
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(port, '127.0.0.1', resolve));
    try {
      const config = join(cluster().dir, 'taken.toml');
      writeFileSync(config, configToml([{ name: 'shard1', address: `127.0.0.1:${port}`, replica: `127.0.0.1:${await freePort()}` }]));
      const dataDir = join(cluster().dir, 'never-created');
      const res = serve(config, dataDir);
      expect(res.status).toBe(2);
      expect(res.stderr).toBe(`kvshard: cannot_start: cannot listen on 127.0.0.1:${port}: the address is already in use by another process\n`);
      expect(existsSync(dataDir)).toBe(false);
    } finally {
      blocker.close();
    }
  });

  it("carries over an earlier version's data dirs named by role, renaming them after their member", async () => {
    expect((await request(cluster().url('shard1', 'primary', dataPath('set', 'carried', 'over')))).status).toBe(200);
    await waitConverged(cluster(), 'shard1');
    await cluster().stop('shard1', 'replica');
    await cluster().stop('shard1', 'primary');
    for (const [member, legacy] of [
      ['a', 'primary'],
      ['b', 'replica'],
    ]) {
      renameSync(join(cluster().dataDir, `shard1-${member}`), join(cluster().dataDir, `shard1-${legacy}`));
    }
    await cluster().start('shard1', 'replica');
    await cluster().start('shard1', 'primary');
    for (const [role, member, legacy] of [
      ['primary', 'a', 'primary'],
      ['replica', 'b', 'replica'],
    ] as const) {
      expect(cluster().output('shard1', role)).toContain(
        `renamed ${join(cluster().dataDir, `shard1-${legacy}`)} to ${join(cluster().dataDir, `shard1-${member}`)}`,
      );
      expect(existsSync(join(cluster().dataDir, `shard1-${legacy}`))).toBe(false);
      expect((await request(cluster().url('shard1', role, dataPath('get', 'carried')))).text()).toBe('over');
    }
  });

  it('keeps data dirs at 700 and their files at 600, also ones made more open before', async () => {
    for (const member of ['a', 'b'] as const) {
      const dir = join(cluster().dataDir, `shard1-${member}`);
      expect(mode(dir)).toBe('700');
      for (const file of readdirSync(dir)) expect(`${file} ${mode(join(dir, file))}`).toBe(`${file} 600`);
    }
    expect(mode(cluster().dataDir)).toBe('700');

    await cluster().stop('shard1', 'replica');
    const dir = join(cluster().dataDir, 'shard1-b');
    chmodSync(dir, 0o755);
    for (const file of readdirSync(dir)) chmodSync(join(dir, file), 0o644);
    await cluster().start('shard1', 'replica');
    expect(mode(dir)).toBe('700');
    for (const file of readdirSync(dir)) expect(mode(join(dir, file))).toBe('600');
  });

  it('creates a new data dir private even under a permissive umask', async () => {
    const config = join(cluster().dir, 'fresh.toml');
    const address = `127.0.0.1:${await freePort()}`;
    writeFileSync(config, configToml([{ name: 'shard1', address, replica: `127.0.0.1:${await freePort()}` }]));
    const dataDir = join(cluster().dir, 'fresh-data');
    mkdirSync(dataDir, { mode: 0o777 });
    chmodSync(dataDir, 0o777);
    const proc = spawn(
      '/bin/sh',
      ['-c', `umask 000 && exec "${process.execPath}" "${cliPath}" serve --config "${config}" --shard shard1 --data-dir "${dataDir}" --overwrite-replica`],
      {
        stdio: 'ignore',
      },
    );
    try {
      const deadline = Date.now() + 20_000;
      while (
        !(await fetch(`http://${address}/health`, { signal: AbortSignal.timeout(1_000) }).then(
          (r) => r.ok,
          () => false,
        ))
      ) {
        if (Date.now() > deadline) throw new Error('the node did not start');
        await new Promise((r) => setTimeout(r, 50));
      }
      const dir = join(dataDir, 'shard1-a');
      expect(mode(dir)).toBe('700');
      for (const file of readdirSync(dir)) expect(`${file} ${mode(join(dir, file))}`).toBe(`${file} 600`);
    } finally {
      const exited = new Promise((resolve) => proc.once('exit', resolve));
      process.kill(proc.pid!, 'SIGKILL');
      await exited;
    }
  });
});
