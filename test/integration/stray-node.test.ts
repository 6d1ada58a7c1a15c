// One process started with a wrong config must not take the cluster out of service. A node acts on
// layout news only from the address its own sharding.toml gives the sender, and a replica takes data
// only from the primary its config names, so a stray shard1 primary at an address no other node knows
// (a copy of the config with shard1's address changed, on a copy of shard1's data) is ignored: every
// node keeps serving. A stray at a trusted address (shard2's, while shard2 was down) that claims a newer
// layout does make the others refuse, but only while it runs it: once shard2's real primary is back on
// the cluster's layout, they serve again without a restart.
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cliPath, configToml, dataPath, freePort, keyOwnedBy, request, waitFor, useCluster } from '../helpers/cluster.js';
import { status, waitConverged } from '../helpers/replication.js';

const cluster = useCluster(2);

interface Stray {
  readonly proc: ChildProcess;
  readonly exited: Promise<unknown>;
  output: string;
}

function startStray(config: string, shard: string, dataDir: string): Stray {
  const proc = spawn(process.execPath, [cliPath, 'serve', '--config', config, '--shard', shard, '--data-dir', dataDir], { stdio: ['ignore', 'pipe', 'pipe'] });
  const stray: Stray = { proc, exited: new Promise((resolve) => proc.once('exit', resolve)), output: '' };
  const append = (chunk: Buffer) => (stray.output = (stray.output + chunk.toString()).slice(-20_000));
  proc.stdout!.on('data', append);
  proc.stderr!.on('data', append);
  return stray;
}

async function stopStray(stray: Stray): Promise<void> {
  process.kill(stray.proc.pid!, 'SIGKILL');
  await stray.exited;
}

/** Every node answers a read and a write of a key of each shard (none answers 421). */
async function expectEveryNodeServes(tag: string): Promise<void> {
  for (const owner of ['shard1', 'shard2']) {
    const key = keyOwnedBy(owner, 2, `${tag}-${owner}-`);
    expect((await request(cluster().url(owner, 'primary', dataPath('set', key, tag)))).status).toBe(200);
    await waitConverged(cluster(), owner);
    for (const [shard, role] of cluster().nodes()) {
      const res = await request(cluster().url(shard, role, dataPath('get', key)));
      expect(`${shard}/${role}: ${res.status}`).toBe(`${shard}/${role}: 200`);
    }
  }
}

describe('a stray node', () => {
  it('at an address no member has is ignored by every node, and its replication is refused', async () => {
    await expectEveryNodeServes('before');
    await cluster().stop('shard1', 'primary');
    const strayData = join(cluster().dir, 'stray-data');
    cpSync(join(cluster().dataDir, 'shard1-a'), join(strayData, 'shard1-a'), { recursive: true });
    await cluster().start('shard1', 'primary');
    const strayAddress = `127.0.0.1:${await freePort()}`;
    const moved = join(cluster().dir, 'moved.toml');
    writeFileSync(moved, configToml([{ ...cluster().shards[0]!, address: strayAddress }, cluster().shards[1]!]));
    const shard2Log = cluster().output('shard2', 'primary').length;
    const stray = startStray(moved, 'shard1', strayData);
    try {
      // The stray records a migration from the cluster's layout to its own and announces it to everyone.
      await waitFor(
        'shard2 hearing from the stray',
        () =>
          /ignoring layout news from shard1\/primary at/.test(cluster().output('shard2', 'primary').slice(shard2Log)) ||
          /refusing data requests/.test(cluster().output('shard2', 'primary').slice(shard2Log)),
      );
      await waitFor(
        'the replica refusing the stray',
        () => /refusing replication from/.test(cluster().output('shard1', 'replica')) || /refusing reads/.test(cluster().output('shard1', 'replica')),
      );
      await expectEveryNodeServes('during');
      for (const [shard, role] of cluster().nodes()) expect((await status(cluster(), shard, role))['layout']['refusing']).toBeNull();
    } finally {
      await stopStray(stray);
    }
    await expectEveryNodeServes('after');
  });

  it('at a trusted address with a newer layout fences the others only while it runs it', async () => {
    await cluster().stop('shard2', 'primary');
    const strayData = join(cluster().dir, 'stray-data-2');
    cpSync(join(cluster().dataDir, 'shard2-a'), join(strayData, 'shard2-a'), { recursive: true });
    const grown = join(cluster().dir, 'grown.toml');
    const extra = { name: 'shard3', address: `127.0.0.1:${await freePort()}`, replica: `127.0.0.1:${await freePort()}` };
    writeFileSync(grown, configToml([...cluster().shards, extra]));
    const stray = startStray(grown, 'shard2', strayData);
    try {
      await waitFor('shard1 refusing because of the stray', async () => (await status(cluster(), 'shard1', 'primary'))['layout']['refusing'] !== null);
      const refused = await request(cluster().url('shard1', 'primary', dataPath('get', 'x')));
      expect(refused.status).toBe(421);
    } finally {
      await stopStray(stray);
    }
    await cluster().start('shard2', 'primary');
    for (const [shard, role] of cluster().nodes()) {
      await waitFor(`${shard}/${role} serving again`, async () => (await status(cluster(), shard, role))['layout']['refusing'] === null);
    }
    expect(cluster().output('shard1', 'primary')).toMatch(/serving data requests again: shard2\/primary at \S+ runs layout/);
    await expectEveryNodeServes('recovered');
  });
});
