// A rolling restart into a grown layout: nodes still on the old sharding.toml answer 421 wrong_shard
// (retriable) once a node on the new one has announced it, instead of answering from data that is
// moving away or taking writes the new owner would not see. Restarting the rest finishes the job.
import { beforeAll, describe, expect, it } from 'vitest';
import { Cluster, dataPath, keyOwnedBy, request, useCluster } from '../helpers/cluster.js';
import { status } from '../helpers/replication.js';
import { get, initialKey, loadKeys, waitMigrated } from '../helpers/resize.js';

const keyCount = 2_000;
/** Binary values under awkward keys, owned by shards whose slots move: migration must copy them exactly. */
const allBytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
const awkward = Array.from({ length: 40 }, (_, i) => [`ключ {${i}} & ? = %`, Buffer.concat([allBytes, Buffer.from([i])])] as const);

const cluster = useCluster(3);
beforeAll(async () => {
  await loadKeys(cluster(), keyCount);
  for (const [key, value] of awkward) {
    const res = await request(cluster().url('shard1', 'primary', `/set?key=${encodeURIComponent(key)}`), { method: 'POST', body: new Uint8Array(value) });
    expect(res.status).toBe(200);
  }
});

async function waitRefusing(shard: string, role: 'primary' | 'replica'): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!(await status(cluster(), shard, role))['layout']['refusing']) {
    if (Date.now() > deadline) throw new Error(`${shard} ${role} never learned that its layout is outdated`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('rolling restart into a new layout', () => {
  it('old-layout nodes answer 421 once a node on the new layout has announced it', async () => {
    const oldConfig = `${cluster().dir}/old.toml`;
    const { copyFileSync } = await import('node:fs');
    copyFileSync(cluster().configPath, oldConfig);
    cluster().reconfigure([...cluster().shards, await Cluster.extraShard(3)]);
    await cluster().stop('shard1', 'primary');
    await cluster().start('shard1', 'primary');

    for (const [shard, role] of [
      ['shard2', 'primary'],
      ['shard2', 'replica'],
      ['shard3', 'primary'],
      ['shard1', 'replica'],
    ] as const) {
      await waitRefusing(shard, role);
      const key = keyOwnedBy(shard, 3, 'roll-');
      const res = await request(cluster().url(shard, role, dataPath(role === 'primary' ? 'set' : 'get', key, role === 'primary' ? 'x' : undefined)));
      expect(res.status).toBe(421);
      expect(res.json()).toMatchObject({ error: 'wrong_shard', retriable: true });
      expect(res.json().message).toMatch(/restart .* with the (new|same) sharding\.toml/);
    }
    // A node started later with the old file learns it is outdated from its peers, too.
    await cluster().stop('shard3', 'replica');
    await cluster().start('shard3', 'replica', oldConfig);
    await waitRefusing('shard3', 'replica');
  });

  it('finishes the migration once every node runs the new layout', async () => {
    for (const [shard, role] of [
      ['shard1', 'replica'],
      ['shard2', 'primary'],
      ['shard2', 'replica'],
      ['shard3', 'primary'],
      ['shard3', 'replica'],
    ] as const) {
      await cluster().stop(shard, role);
      await cluster().start(shard, role);
    }
    // A new primary waits for its replica to say the shard is new before it serves.
    await cluster().start('shard4', 'primary', undefined, { ready: false });
    await cluster().start('shard4', 'replica');
    await cluster().waitServing('shard4');
    await waitMigrated(cluster());
    for (let i = 0; i < keyCount; i += 7) {
      const res = await get(cluster().address('shard4', 'replica'), `/get?key=${initialKey(i)}`);
      expect(res).toEqual({ status: 200, body: `v${i}` });
    }
    for (const [shard, role] of cluster().nodes()) expect((await status(cluster(), shard, role))['layout']['refusing']).toBeNull();
    for (const [key, value] of awkward) {
      const res = await request(cluster().url('shard4', 'primary', dataPath('get', key)));
      expect(res.status).toBe(200);
      expect(res.body.equals(value)).toBe(true);
    }
  });
});
