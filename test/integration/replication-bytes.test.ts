// Values with every byte value 0-255 and keys with &, =, %, +, spaces and unicode replicate exactly: the
// replica returns the same bytes as the primary.
import { describe, expect, it } from 'vitest';
import { useCluster, dataPath, request } from '../helpers/cluster.js';
import { waitConverged } from '../helpers/replication.js';

const cluster = useCluster(1);

describe('byte-exact replication', () => {
  it('replicates binary values and awkward keys exactly', async () => {
    const allBytes = Buffer.alloc(256 * 3);
    for (let i = 0; i < allBytes.length; i++) allBytes[i] = (i * 7) % 256;
    const values = new Map<string, Buffer>([
      ['a&b=c', allBytes],
      ['100% sure', Buffer.from([0, 0, 0])],
      ['sp ace+plus', Buffer.from([255, 254, 0, 10, 13])],
      ['ключ 键 🔑', Buffer.from('ünïcödé value', 'utf8')],
      ['nul\u0000key', Buffer.alloc(0)],
      ['{tag}=%&', Buffer.alloc(1024 * 1024, 0xab)],
    ]);
    for (const [key, value] of values) {
      const res = await request(cluster().url('shard1', 'primary', dataPath('set', key)), { method: 'POST', body: new Uint8Array(value) });
      expect(res.status).toBe(200);
    }
    await waitConverged(cluster(), 'shard1');
    for (const [key, value] of values) {
      const res = await request(cluster().url('shard1', 'replica', dataPath('get', key)));
      expect(res.status).toBe(200);
      expect(res.headers.get('x-kv-role')).toBe('replica');
      expect(res.body.equals(value)).toBe(true);
    }
  });
});
