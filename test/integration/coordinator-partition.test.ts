// With a coordinator, a primary's host is cut off (its own network namespace, link down) while a writer
// on that same host goes on writing to it. The primary can no longer renew its etcd lease: it stops
// acknowledging writes (503 lease_expired) before etcd lets the other member take the shard, and the
// histories show it: no write is acknowledged by the old primary after the new primary's first
// acknowledged write. With the link up again, the old primary rejoins as replica.
//
// Needs root, iproute2's `ip` and etcd (Debian's etcd-server); without them the test is skipped,
// except under CI=true, where it fails.
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { etcdUnavailable, LocalEtcd } from '../../src/harness/local-etcd.js';
import { Cluster, dataPath, keyOwnedBy, request, waitFor } from '../helpers/cluster.js';
import { memberStatus } from '../helpers/failover.js';
import { NetnsNetwork, netnsUnavailable } from '../helpers/netns.js';
import { needsTool } from '../helpers/tool-gate.js';

const unavailable = netnsUnavailable() ?? etcdUnavailable();
const runs = needsTool('coordinator-partition.test.ts', 'the coordinator partition test', unavailable);

const port = 7000;
const leaseTtlMs = 2000;
/** How long the writer on the cut-off host writes: past the lease and the other member's takeover. */
const writerMs = 12_000;
const testTimeoutMs = 120_000;

/** One write the writer on the primary's host sent at `t`, and its answer at `r` (status 0: none within its timeout). */
interface Attempt {
  readonly t: number;
  readonly r: number;
  readonly status: number;
  readonly code?: string;
  readonly epoch?: number;
}

/**
 * Runs a writer inside `namespace` for `ms`: one write at a time to `url`, each with a 500 ms timeout,
 * every attempt printed as a JSON line with Date.now() at send and at answer, which the test compares
 * with its own clock. `attempts` fills as they come; `done` resolves when the writer has exited.
 */
function writerOnHost(namespace: string, url: string, ms: number): { attempts: Attempt[]; done: Promise<void> } {
  const script = `
    const end = Date.now() + ${ms};
    (async () => {
      for (let i = 0; Date.now() < end; i++) {
        const t = Date.now();
        try {
          const res = await fetch(${JSON.stringify(url)} + i, { signal: AbortSignal.timeout(500) });
          const body = await res.json().catch(() => ({}));
          console.log(JSON.stringify({ t, r: Date.now(), status: res.status, code: body.error, epoch: body.epoch }));
        } catch {
          console.log(JSON.stringify({ t, r: Date.now(), status: 0 }));
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    })();`;
  const child = spawn('ip', ['netns', 'exec', namespace, process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const attempts: Attempt[] = [];
  let pending = '';
  child.stdout.on('data', (chunk: Buffer) => {
    pending += chunk.toString('utf8');
    const lines = pending.split('\n');
    pending = lines.pop()!;
    for (const line of lines) if (line.length > 0) attempts.push(JSON.parse(line) as Attempt);
  });
  const done = new Promise<void>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', () => resolve());
  });
  return { attempts, done };
}

describe.skipIf(!runs)('a coordinated primary cut off from etcd and its peers', () => {
  let network: NetnsNetwork;
  let etcd: LocalEtcd;
  let cluster: Cluster;
  beforeAll(async () => {
    network = await NetnsNetwork.create(['shard1-primary', 'shard1-replica']);
    etcd = await LocalEtcd.start(network.bridgeAddress);
    const shards = [
      { name: 'shard1', address: `${network.host('shard1-primary').address}:${port}`, replica: `${network.host('shard1-replica').address}:${port}` },
    ];
    const extra = etcd.coordinatorToml({ leaseTtlMs });
    cluster = Cluster.onAddresses(shards, extra, (shard, role) => network.execPrefix(`${shard}-${role}`));
    await cluster.startAll();
    await waitFor('the primary holds its key', async () => (await memberStatus(cluster, 'shard1', 'primary')).coordinator?.holds_key === true);
  }, testTimeoutMs);
  afterAll(async () => {
    try {
      await cluster?.destroy();
      await etcd?.close();
    } finally {
      await network?.destroy();
    }
  }, testTimeoutMs);

  it(
    'stops acknowledging writes before the other member takes over, and rejoins as its replica',
    async () => {
      const host = network.host('shard1-primary');
      const writer = writerOnHost(host.namespace, `http://${host.address}:${port}${dataPath('set', keyOwnedBy('shard1', 1, 'cut-'), 'x')}`, writerMs);
      await waitFor('the primary takes writes from its own host', () => writer.attempts.filter((a) => a.status === 200).length >= 5);
      const cutAt = Date.now();
      await network.linkDown('shard1-primary');
      let firstNew: { t: number; epoch: number } | undefined;
      try {
        firstNew = await waitFor(
          'the other member takes writes',
          async () => {
            const t = Date.now();
            const reply = await request(cluster.url('shard1', 'replica', dataPath('set', keyOwnedBy('shard1', 1, `new-${t}-`), 'y')), {
              signal: AbortSignal.timeout(2_000),
            }).catch(() => undefined);
            return reply?.status === 200 ? { t, epoch: reply.json().epoch as number } : undefined;
          },
          60_000,
        );
      } finally {
        await network.linkUp('shard1-primary');
      }
      await writer.done;
      const attempts = writer.attempts;
      const oldAcks = attempts.filter((a) => a.status === 200);
      // The fault happened: the old primary acknowledged writes before the cut, and refused them after it.
      expect(oldAcks.some((a) => a.t < cutAt)).toBe(true);
      expect(attempts.some((a) => a.t > cutAt && a.status === 503 && a.code === 'lease_expired')).toBe(true);
      // An acknowledgement counts from when its answer arrived; the new primary's from when its write was sent.
      const late = oldAcks.filter((a) => a.r >= firstNew!.t);
      expect(late, 'writes the old primary acknowledged after the new primary had').toEqual([]);
      expect(firstNew!.epoch).toBeGreaterThan(Math.max(...oldAcks.map((a) => a.epoch ?? 0)));
      console.log(
        `old primary's last ack ${firstNew!.t - Math.max(...oldAcks.map((a) => a.r))} ms before the new primary's first; ` +
          `the new primary took writes ${firstNew!.t - cutAt} ms after the cut (lease_ttl_ms ${leaseTtlMs})`,
      );
      await waitFor('the old primary rejoins as replica', async () => (await memberStatus(cluster, 'shard1', 'primary')).role === 'replica', 60_000);
    },
    testTimeoutMs,
  );
});
