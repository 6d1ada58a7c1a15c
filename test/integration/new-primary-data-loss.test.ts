// A member that is primary after a failover (member b) loses its data dir. It must not promote an
// empty store and serve it: it comes back, learns from its shard's other member (whose data dir is
// intact) that it is primary, and rebuilds from that member before it takes writes, exactly as member a
// does after losing its own (primary-recovery.ts). Nothing acknowledged is lost on either member.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { dataPath, keyOwnedBy, request, useCluster, waitFor } from '../helpers/cluster.js';
import { memberStatus, runFailover, waitRoles } from '../helpers/failover.js';

const cluster = useCluster(1);
const keys = Array.from({ length: 40 }, (_, i) => keyOwnedBy('shard1', 1, `k${i}-`));

it('a primary that lost its data dir rebuilds from the other member before it serves', async () => {
  const c = cluster();
  const switched = await runFailover(c, 'shard1');
  expect(switched.code, switched.stderr).toBe(0);
  await waitRoles(c, 'shard1', 'replica');
  for (const k of keys) expect((await request(c.url('shard1', 'replica', dataPath('set', k, `v:${k}`, '&ack=replica')))).status).toBe(200);

  await c.kill('shard1', 'replica');
  rmSync(join(c.dataDir, 'shard1-b'), { recursive: true, force: true });
  await c.start('shard1', 'replica', undefined, { ready: false });
  await waitFor('member b serves as primary again', async () => (await memberStatus(c, 'shard1', 'replica'))['role'] === 'primary');
  // Every key answers from b once it serves, and a still holds them all: nothing was wiped either way.
  await waitRoles(c, 'shard1', 'replica');
  for (const k of keys) expect((await request(c.url('shard1', 'replica', dataPath('get', k)))).text(), k).toBe(`v:${k}`);
  expect((await memberStatus(c, 'shard1', 'primary'))['keys']).toBe(keys.length);
  expect(c.output('shard1', 'replica')).toMatch(/rebuil|copied|copy/i);
});
