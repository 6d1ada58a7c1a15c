// Acknowledged writes survive both a clean stop (SIGTERM) and a crash of the process (kill -9). A kill -9
// leaves the operating system's page cache intact, so this shows that an acknowledged write is committed,
// not that it is on disk: sync-before-ack.test.ts checks that a write is acknowledged only after its sync.
import { describe, expect, it } from 'vitest';
import { dataPath, keyOwnedBy, request, useCluster } from '../helpers/cluster.js';

// Two shards: a restarted primary takes writes once another node has confirmed its epochs (failover.md).
const cluster = useCluster(2, { replicas: false });
const key = (prefix: string, i: number) => keyOwnedBy('shard1', 2, `${prefix}${i}-`);

async function writeMany(prefix: string, count: number): Promise<void> {
  await Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const res = await request(cluster().url('shard1', 'primary', dataPath('set', key(prefix, i), `value-${i}`)));
      expect(res.status).toBe(200);
    }),
  );
}

async function expectAll(prefix: string, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const res = await request(cluster().url('shard1', 'primary', dataPath('get', key(prefix, i))));
    expect(res.status).toBe(200);
    expect(res.text()).toBe(`value-${i}`);
  }
}

describe('restarts', () => {
  it('keeps data across SIGTERM and start, exiting 0', async () => {
    await writeMany('clean-', 200);
    expect(await cluster().stop('shard1', 'primary')).toBe(0);
    await cluster().start('shard1', 'primary');
    await expectAll('clean-', 200);
  });

  it('keeps every acknowledged write across a crash of the process (kill -9)', async () => {
    await writeMany('killed-', 500);
    await cluster().kill('shard1', 'primary');
    await cluster().start('shard1', 'primary');
    await expectAll('killed-', 500);
  });
});
