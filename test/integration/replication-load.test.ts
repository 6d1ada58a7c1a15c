// 10,000 sets and deletes from 32 concurrent clients on a two-shard cluster: every replica ends with
// exactly its primary's data (equal digests), and the replicas serve the final values.
import { describe, expect, it } from 'vitest';
import { useCluster, dataPath, ownerOf, request } from '../helpers/cluster.js';
import { runLoad, waitConverged } from '../helpers/replication.js';

const cluster = useCluster(2);
// A bound, not a target: 10,000 durable writes take about half a minute on an idle 2-core machine and
// several times that on a loaded one.
const loadTestTimeoutMs = 240_000;

describe('replication under concurrent load', () => {
  it(
    'converges after 10,000 writes and deletes from 32 clients',
    async () => {
      const expected = new Map<string, string | undefined>();
      // Each client writes only its own 60 keys, one request at a time, so every key's last acknowledged
      // operation is well defined.
      await runLoad(32, 10_000, async (i, worker) => {
        const key = `load-${worker}-${i % 60}`;
        const via = i % 2 === 0 ? 'shard1' : 'shard2';
        if (i % 7 === 3) {
          const res = await request(cluster().url(via, 'primary', dataPath('delete', key)));
          expect(res.status).toBe(200);
          expected.set(key, undefined);
        } else {
          const value = `v${i}-${'x'.repeat(i % 50)}`;
          const res = await request(cluster().url(via, 'primary', dataPath('set', key, value)));
          expect(res.status).toBe(200);
          expected.set(key, value);
        }
      });
      const total = [...expected.values()].filter((v) => v !== undefined).length;
      const c1 = await waitConverged(cluster(), 'shard1');
      const c2 = await waitConverged(cluster(), 'shard2');
      expect(c1.keys + c2.keys).toBe(total);

      // Spot-check values through the replicas, including reads forwarded between replicas.
      const keys = [...expected.keys()];
      for (let k = 0; k < keys.length; k += 23) {
        const key = keys[k]!;
        const owner = ownerOf(key, 2);
        const other = owner === 'shard1' ? 'shard2' : 'shard1';
        for (const via of [owner, other]) {
          const res = await request(cluster().url(via, 'replica', dataPath('get', key)));
          expect(res.headers.get('x-kv-role')).toBe('replica');
          expect(res.headers.get('x-kv-shard')).toBe(owner);
          if (expected.get(key) === undefined) expect(res.status).toBe(404);
          else expect(res.text()).toBe(expected.get(key));
        }
      }
    },
    loadTestTimeoutMs,
  );
});
