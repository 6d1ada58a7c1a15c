// kill -9 of the primary in the middle of a write load: after a restart every write acknowledged before
// the kill is on the primary with its last acknowledged value (or with the one write to that key that
// was in flight at the kill), and the replica converges to the same data.
import { describe, expect, it } from 'vitest';
import { useCluster, dataPath, request } from '../helpers/cluster.js';
import { waitConverged } from '../helpers/replication.js';

const cluster = useCluster(1);

describe('primary kill -9', () => {
  it('keeps every acknowledged write and the replica converges', async () => {
    const clients = 16;
    const acked = new Map<string, string>();
    const inFlight = new Map<string, string>();
    let killed = false;
    let ackedCount = 0;
    // Each client writes its own keys one request at a time, so per key there is at most one write in
    // flight when the kill lands.
    const load = Array.from({ length: clients }, async (_, worker) => {
      for (let i = 0; !killed && i < 100_000; i++) {
        const key = `pk-${worker}-${i % 50}`;
        const value = `w${worker}-i${i}`;
        inFlight.set(key, value);
        try {
          const res = await request(cluster().url('shard1', 'primary', dataPath('set', key, value)));
          if (res.status !== 200) return;
          acked.set(key, value);
          ackedCount++;
        } catch {
          return; // the connection died with the primary: this write was never acknowledged
        }
      }
    });
    while (ackedCount < 1_500) await new Promise((r) => setTimeout(r, 20));
    await cluster().kill('shard1', 'primary');
    killed = true;
    await Promise.all(load);
    const snapshot = new Map(acked);
    expect(snapshot.size).toBeGreaterThan(0);

    await cluster().start('shard1', 'primary');
    for (const [key, value] of snapshot) {
      const res = await request(cluster().url('shard1', 'primary', dataPath('get', key)));
      expect(res.status).toBe(200);
      expect([value, inFlight.get(key)]).toContain(res.text());
    }
    await waitConverged(cluster(), 'shard1');
    for (const [key] of snapshot) {
      const atPrimary = await request(cluster().url('shard1', 'primary', dataPath('get', key)));
      const atReplica = await request(cluster().url('shard1', 'replica', dataPath('get', key)));
      expect(atReplica.text()).toBe(atPrimary.text());
    }
  });
});
