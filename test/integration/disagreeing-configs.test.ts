// Two nodes that run different configs must not bounce a request between them or answer for a key they
// do not own: the node that receives a misrouted forwarded request answers 421 wrong_shard, naming both
// views, and forwards nothing.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alone, Cluster, configToml, dataPath, keyOwnedBy, ownerOf, request } from '../helpers/cluster.js';

// Primaries only: half the nodes, never a majority. The longest node timeout keeps the minority fence
// (failover.md) out of what this file tests.
const longNodeTimeout = 'node_timeout_ms = 600000';

let cluster: Cluster;
beforeAll(async () => {
  cluster = await Cluster.create(3, undefined, longNodeTimeout);
  // shard1 believes the cluster has two shards (shard1, shard2); everyone else knows three.
  const twoShards = join(cluster.dir, 'two-shards.toml');
  writeFileSync(twoShards, configToml(cluster.shards.slice(0, 2), longNodeTimeout));
  await cluster.start('shard1', 'primary', twoShards, alone);
  await cluster.start('shard2', 'primary', undefined, alone);
  await cluster.start('shard3', 'primary', undefined, alone);
  // shard1 alone runs its config: it may never settle, which only matters for keys it owns.
  await cluster.waitLayoutDecided(['shard2', 'shard3']);
});
afterAll(async () => {
  await cluster?.destroy();
});

describe('nodes with different configs', () => {
  it('answers 421 naming both views instead of forwarding again', async () => {
    // A key that shard1 (two shards) routes to shard2, but shard2 (three shards) routes to shard3.
    let key = '';
    for (let i = 0; i < 10_000 && !key; i++) {
      if (ownerOf(`dis${i}`, 2) === 'shard2' && ownerOf(`dis${i}`, 3) === 'shard3') key = `dis${i}`;
    }
    expect(key).not.toBe('');
    for (const path of [dataPath('set', key, 'v'), dataPath('get', key), dataPath('delete', key)]) {
      const res = await request(cluster.url('shard1', 'primary', path));
      expect(res.status).toBe(421);
      const body = res.json();
      expect(body.error).toBe('wrong_shard');
      expect(body.this_node).toMatchObject({ shard: 'shard2', role: 'primary', owner: 'shard3' });
      expect(body.sender.node).toBe('shard1/primary');
      expect(body.sender.layout_id).not.toBe(body.this_node.layout_id);
      expect(res.headers.get('x-kv-shard')).toBe('shard2');
    }
    // Nothing was written anywhere.
    expect((await request(cluster.url('shard3', 'primary', dataPath('get', key)))).status).toBe(404);
  });

  it('still serves keys both configs agree on', async () => {
    const key = keyOwnedBy('shard2', 2, 'agree-');
    expect(ownerOf(key, 3)).toBe('shard2');
    expect((await request(cluster.url('shard1', 'primary', dataPath('set', key, 'same')))).status).toBe(200);
    expect((await request(cluster.url('shard2', 'primary', dataPath('get', key)))).text()).toBe('same');
  });
});
