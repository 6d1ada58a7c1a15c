// Layout changes other than a plain resize: new addresses for the same shards move nothing; a third
// layout while a migration is unfinished is refused (exit 2) until that migration is done; a drain is
// refused for a shard still in the config or without data.
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { cliPath, Cluster, configToml, dataPath, freePort, keyOwnedBy, request, useCluster } from '../helpers/cluster.js';
import { status } from '../helpers/replication.js';

const cluster = useCluster(3);
beforeAll(async () => {
  for (let i = 0; i < 200; i++) {
    expect((await request(cluster().url('shard1', 'primary', dataPath('set', `topo-${i}`, `v${i}`)))).status).toBe(200);
  }
  await cluster().stopAll();
});

function run(...args: string[]) {
  return spawnSync(process.execPath, [cliPath, ...args, '--data-dir', cluster().dataDir], { encoding: 'utf8', timeout: 20_000 });
}

describe('layout changes', () => {
  it('keeps the data when only addresses change, moving no slot', async () => {
    cluster().reconfigure(await Promise.all(cluster().shards.map(async (s) => ({ ...s, address: `127.0.0.1:${await freePort()}` }))));
    await cluster().startAll();
    const key = keyOwnedBy('shard1', 3, 'topo-');
    const got = await request(cluster().url('shard2', 'replica', dataPath('get', key)));
    expect(got.status).toBe(200);
    expect(got.text()).toBe(`v${key.slice('topo-'.length)}`);
    const migration = (await status(cluster(), 'shard1', 'primary'))['migration'];
    expect(migration).toMatchObject({ state: 'done', slots_to_send: 0, slots_to_receive: 0 });
    await cluster().stopAll();
  });

  it('refuses a third layout while a migration is unfinished, and resumes with the one being migrated to', async () => {
    const three = [...cluster().shards];
    // shard1 migrates towards 4 shards, but shard4 never starts, so the migration cannot finish.
    cluster().reconfigure([...three, await Cluster.extraShard(3)]);
    // Alone, with epochs from its earlier runs, it takes no writes (no peer confirms them): only its status is read.
    await cluster().start('shard1', 'primary', undefined, { ready: false });
    expect((await status(cluster(), 'shard1', 'primary'))['migration']['state']).toBe('migrating');
    await cluster().stop('shard1', 'primary');

    const fiveConfig = join(cluster().dir, 'five.toml');
    writeFileSync(fiveConfig, configToml([...cluster().shards, await Cluster.extraShard(4)]));
    const refused = run('serve', '--config', fiveConfig, '--shard', 'shard1');
    expect(refused.status).toBe(2);
    expect(refused.stderr).toMatch(/five\.toml: shards: shard1 .* is still moving keys from layout \w+ to \w+, and this config is a third layout/);

    await cluster().start('shard1', 'primary', undefined, { ready: false });
    expect((await status(cluster(), 'shard1', 'primary'))['migration']['state']).toBe('migrating');
    await cluster().stop('shard1', 'primary');
  });

  it('refuses to drain a shard that is in the config or has no data', () => {
    const inConfig = run('drain', '--config', cluster().configPath, '--shard', 'shard2');
    expect(inConfig.status).toBe(2);
    expect(inConfig.stderr).toContain('shard2 is in the config: serve it instead of draining it');
    const noData = run('drain', '--config', cluster().configPath, '--shard', 'shard9');
    expect(noData.status).toBe(2);
    expect(noData.stderr).toMatch(/shard9-a: no such data dir/);
  });
});
