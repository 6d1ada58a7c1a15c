// Until online resize exists, a node refuses to start with a config that gives keys it holds to other
// shards (they would become unreachable): it exits 2 naming the count, and starts again with the old
// config with every key intact. A changed layout that strands nothing (new addresses, or a resize of an
// empty shard) is accepted.
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliPath, Cluster, configToml, dataPath, freePort, keyOwnedBy, layout, request } from '../helpers/cluster.js';

let cluster: Cluster;
beforeAll(async () => {
  cluster = await Cluster.started(3);
  for (let i = 0; i < 200; i++) {
    expect((await request(cluster.url('shard1', 'primary', dataPath('set', `topo-${i}`, `v${i}`)))).status).toBe(200);
  }
  for (const [shard, role] of cluster.nodes()) await cluster.stop(shard, role);
});
afterAll(async () => {
  await cluster?.destroy();
});

function serve(config: string, shard: string) {
  return spawnSync(process.execPath, [cliPath, 'serve', '--config', config, '--shard', shard, '--data-dir', cluster.dataDir], {
    encoding: 'utf8',
    timeout: 20_000,
  });
}

describe('topology changes without online resize', () => {
  it('refuses a grown config that would strand keys, then serves with the old config', async () => {
    const grown = join(cluster.dir, 'four.toml');
    const extra = (await layout(1))[0]!;
    writeFileSync(grown, configToml([...cluster.shards, { ...extra, name: 'shard4' }]));
    const res = serve(grown, 'shard1');
    expect(res.status).toBe(2);
    expect(res.stderr).toMatch(/four\.toml: shards: this config gives \d+ keys held by shard1 .* to other shards/);
    expect(res.stderr).toContain('online resize) is not supported yet');

    await cluster.startAll();
    for (let i = 0; i < 200; i += 17) {
      expect((await request(cluster.url('shard2', 'primary', dataPath('get', `topo-${i}`)))).text()).toBe(`v${i}`);
    }
    for (const [shard, role] of cluster.nodes()) await cluster.stop(shard, role);
  });

  it('accepts new addresses for the same shards, keeping the data', async () => {
    const moved = await Promise.all(cluster.shards.map(async (s) => ({ ...s, address: `127.0.0.1:${await freePort()}` })));
    const movedConfig = join(cluster.dir, 'moved.toml');
    writeFileSync(movedConfig, configToml(moved));
    const node = spawn(process.execPath, [cliPath, 'serve', '--config', movedConfig, '--shard', 'shard1', '--data-dir', cluster.dataDir], { stdio: 'ignore' });
    const exited = new Promise((resolve) => node.once('exit', resolve));
    try {
      const key = keyOwnedBy('shard1', 3, 'topo-');
      let res = await request(`http://${moved[0]!.address}/health`).catch(() => undefined);
      for (let i = 0; i < 100 && res?.status !== 200; i++) {
        await new Promise((r) => setTimeout(r, 100));
        res = await request(`http://${moved[0]!.address}/health`).catch(() => undefined);
      }
      const got = await request(`http://${moved[0]!.address}${dataPath('get', key)}`);
      expect(got.status).toBe(200);
      expect(got.text()).toBe(`v${key.slice('topo-'.length)}`);
    } finally {
      process.kill(node.pid!, 'SIGKILL');
      await exited;
    }
  });

  it('accepts a grown config for a node that holds no keys', async () => {
    const empty = await Cluster.started(3);
    try {
      for (const [shard, role] of empty.nodes()) await empty.stop(shard, role);
      const grown = join(empty.dir, 'four.toml');
      const extra = (await layout(1))[0]!;
      writeFileSync(grown, configToml([...empty.shards, { ...extra, name: 'shard4' }]));
      const node = spawn(process.execPath, [cliPath, 'serve', '--config', grown, '--shard', 'shard1', '--data-dir', empty.dataDir], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      node.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
      const exited = new Promise((resolve) => node.once('exit', resolve));
      let healthy = false;
      for (let i = 0; i < 100 && !healthy; i++) {
        await new Promise((r) => setTimeout(r, 100));
        healthy = (await request(`http://${empty.address('shard1')}/health`).catch(() => undefined))?.status === 200;
      }
      process.kill(node.pid!, 'SIGKILL');
      await exited;
      expect(healthy, stderr).toBe(true);
    } finally {
      await empty.destroy();
    }
  });
});
