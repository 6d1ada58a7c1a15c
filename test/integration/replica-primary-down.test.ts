// A replica whose primary is down says so and keeps answering from its complete copy. Its /status turns
// in_sync false once the primary has been silent past the declared bound, and a replica restarted while
// its primary is down answers a key it does not hold with 404 (not 503), since it completed its resync
// before and its primary had no keys moving in. When the primary is back, in_sync turns true again.
import { beforeAll, describe, expect, it } from 'vitest';
import { dataPath, request, waitFor, useCluster } from '../helpers/cluster.js';
import { status, waitConverged } from '../helpers/replication.js';

const cluster = useCluster(1);
beforeAll(async () => {
  for (let i = 0; i < 20; i++) expect((await request(cluster().url('shard1', 'primary', dataPath('set', `held-${i}`, `v${i}`)))).status).toBe(200);
  await waitConverged(cluster(), 'shard1');
});

function waitInSync(expected: boolean): Promise<Record<string, any>> {
  return waitFor(`in_sync ${expected}`, async () => {
    const replica = await status(cluster(), 'shard1', 'replica');
    return replica['in_sync'] === expected && replica;
  });
}

describe('a replica whose primary is down', () => {
  it('reports itself out of sync once the primary is silent past the bound', async () => {
    expect((await status(cluster(), 'shard1', 'replica'))['in_sync']).toBe(true);
    await cluster().kill('shard1', 'primary');
    const replica = await waitInSync(false);
    expect(replica['complete']).toBe(true);
    expect(replica['last_contact_ms_ago']).toBeGreaterThan(replica['primary_silence_max_ms']);
    const got = await request(cluster().url('shard1', 'replica', dataPath('get', 'held-3')));
    expect(got.status).toBe(200);
    expect(got.text()).toBe('v3');
  });

  it('answers from its complete copy after a restart: 200 for a held key, 404 for another', async () => {
    await cluster().stop('shard1', 'replica');
    await cluster().start('shard1', 'replica');
    expect((await status(cluster(), 'shard1', 'replica'))['in_sync']).toBe(false);
    const held = await request(cluster().url('shard1', 'replica', dataPath('get', 'held-7')));
    expect(held.status).toBe(200);
    expect(held.text()).toBe('v7');
    const missing = await request(cluster().url('shard1', 'replica', dataPath('get', 'never-written')));
    expect(missing.status).toBe(404);
    expect(missing.json()).toMatchObject({ error: 'not_found' });
  });

  it('is in sync again once the primary is back', async () => {
    await cluster().start('shard1', 'primary');
    await waitInSync(true);
    await waitConverged(cluster(), 'shard1');
  });
});
