// `npm run bench -- --only lease`: automatic failover through etcd leases. For each lease TTL (the
// default 5000 ms and the least, 2000), a one-shard cluster with a [coordinator] and a local etcd:
// `kills` times, under a write load, kill -9 of whichever member is primary, and the time from the kill
// to the first write the other member acknowledges; then the killed member restarts and catches up
// before the next kill. Then writes per second at the primary with the coordinator on and off, in
// alternating runs, to show what the lease costs the write path. The target: every gap at most the TTL
// plus 2 s.

import { sleep } from '../core/backoff.js';
import type { RoleName } from '../core/config.js';
import { LocalCluster } from '../harness/local-cluster.js';
import { LocalEtcd } from '../harness/local-etcd.js';
import { runLoad, type Tool } from './load-generator.js';
import { withCpu } from './process-cpu.js';
import { httpGet } from './scenarios.js';

/** Kills per TTL: the median and worst are over ten. */
const kills = 10;
const ttlsMs = [5000, 2000] as const;
/** The target: writes resume within the TTL plus this. */
const targetSlackMs = 2000;
/** A kill whose failover has not happened by then counts as a miss, and the run goes on. */
const gapMaxMs = 60_000;
/** How long a restarted member may take to rejoin as an in-sync replica. */
const rejoinMaxMs = 60_000;
const members: readonly ('primary' | 'replica')[] = ['primary', 'replica'];

export interface LeaseFailoverFigures {
  readonly ttl_ms: number;
  readonly gaps_ms: number[];
  readonly median_ms: number;
  readonly worst_ms: number;
  readonly target_ms: number;
  readonly missed: number;
}

export interface LeaseCostFigures {
  readonly on_req_s: number;
  readonly off_req_s: number;
  readonly on_cpu_us_req: number;
  readonly off_cpu_us_req: number;
}

const statusOf = async (cluster: LocalCluster, member: RoleName): Promise<Record<string, unknown> | undefined> => {
  const reply = await httpGet(cluster.url('shard1', member, '/status')).catch(() => undefined);
  return reply?.status === 200 ? (JSON.parse(reply.body) as Record<string, unknown>) : undefined;
};

async function waitUntil(what: string, deadlineMs: number, probe: () => Promise<boolean>): Promise<void> {
  const deadline = performance.now() + deadlineMs;
  while (!(await probe())) {
    if (performance.now() > deadline) throw new Error(`${what} did not happen within ${deadlineMs} ms`);
    await sleep(50);
  }
}

/** The harness name of the member that holds the shard's key now. */
async function holder(cluster: LocalCluster): Promise<'primary' | 'replica'> {
  for (;;) {
    for (const m of members) {
      const coordinator = (await statusOf(cluster, m))?.['coordinator'] as { holds_key?: boolean } | undefined;
      if (coordinator?.holds_key === true) return m;
    }
    await sleep(50);
  }
}

/** Writes one key at a time to `member` until stopped; resolves with when the first acknowledged write after `from` ended. */
function firstAckAfter(cluster: LocalCluster, member: 'primary' | 'replica', from: number, stop: { stopped: boolean }): Promise<number | undefined> {
  return (async () => {
    for (let i = 0; !stop.stopped; i++) {
      const reply = await httpGet(cluster.url('shard1', member, `/set?key=lease-${from.toFixed(0)}-${i}&value=v`)).catch(() => undefined);
      if (reply?.status === 200) return performance.now();
      await sleep(5);
    }
    return undefined;
  })();
}

async function measureTtl(etcd: LocalEtcd, ttlMs: number, log: (line: string) => void): Promise<LeaseFailoverFigures> {
  const cluster = await LocalCluster.create(1, undefined, etcd.coordinatorToml({ leaseTtlMs: ttlMs, prefix: `/bench/${ttlMs}` }));
  const gaps: number[] = [];
  let missed = 0;
  try {
    await cluster.startAll();
    for (let k = 0; k < kills; k++) {
      const victim = await holder(cluster);
      const other = victim === 'primary' ? 'replica' : 'primary';
      // A replica without a complete, recent copy does not campaign: kill only once it is in sync.
      await waitUntil('the replica in sync', rejoinMaxMs, async () => (await statusOf(cluster, other))?.['in_sync'] === true);
      const killedAt = performance.now();
      await cluster.kill('shard1', victim);
      const stop = { stopped: false };
      const timer = setTimeout(() => (stop.stopped = true), gapMaxMs);
      const acked = await firstAckAfter(cluster, other, killedAt, stop);
      clearTimeout(timer);
      if (acked === undefined) {
        missed++;
        // What the member that did not take over says of itself, for whoever looks into the miss.
        const s = await statusOf(cluster, other);
        const said = { role: s?.['role'], epoch: s?.['epoch'], coordinator: s?.['coordinator'], in_sync: s?.['in_sync'] };
        log(`  lease_ttl_ms ${ttlMs}, kill ${k + 1}: no failover; ${other}: ${JSON.stringify(said)}`);
      } else {
        gaps.push(acked - killedAt);
        log(`  lease_ttl_ms ${ttlMs}, kill ${k + 1}: writes resumed ${(acked - killedAt).toFixed(0)} ms after kill -9`);
      }
      await cluster.start('shard1', victim, undefined, { ready: false });
      if (acked !== undefined) {
        await waitUntil('the killed member rejoining in sync', rejoinMaxMs, async () => (await statusOf(cluster, victim))?.['in_sync'] === true);
      }
    }
  } finally {
    await cluster.destroy();
  }
  const sorted = [...gaps].sort((a, b) => a - b);
  const target = ttlMs + targetSlackMs;
  return {
    ttl_ms: ttlMs,
    gaps_ms: gaps,
    median_ms: sorted.length === 0 ? Number.NaN : sorted[Math.floor((sorted.length - 1) / 2)]!,
    worst_ms: sorted.at(-1) ?? Number.NaN,
    target_ms: target,
    missed: missed + gaps.filter((g) => g > target).length,
  };
}

/** Writes per second at the primary, a one-shard cluster with and one without a coordinator, alternating. */
async function measureCost(etcd: LocalEtcd, settings: { durationS: number; pairs: number; tool: Tool }): Promise<LeaseCostFigures> {
  const on = await LocalCluster.create(1, undefined, etcd.coordinatorToml({ prefix: '/bench/cost' }));
  const off = await LocalCluster.create(1);
  try {
    await on.startAll();
    await off.startAll();
    await holder(on);
    const mix = { gets: [], setEvery: 1, setPrefixes: [''], setValue: 'v', setExtra: '' };
    const runs = { on: [] as { rps: number; cpu: number }[], off: [] as { rps: number; cpu: number }[] };
    for (let p = 0; p < settings.pairs; p++) {
      for (const [name, cluster] of p % 2 === 0
        ? ([
            ['on', on],
            ['off', off],
          ] as const)
        : ([
            ['off', off],
            ['on', on],
          ] as const)) {
        const result = await withCpu(cluster.pid('shard1', 'primary'), () =>
          runLoad(settings.tool, { baseUrl: `http://${cluster.address('shard1', 'primary')}`, mix, durationS: settings.durationS, connections: 64 }),
        );
        runs[name].push({ rps: result.requestsPerSec, cpu: result.cpuUsPerReq });
      }
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
    return {
      on_req_s: median(runs.on.map((r) => r.rps)),
      off_req_s: median(runs.off.map((r) => r.rps)),
      on_cpu_us_req: median(runs.on.map((r) => r.cpu)),
      off_cpu_us_req: median(runs.off.map((r) => r.cpu)),
    };
  } finally {
    await on.destroy();
    await off.destroy();
  }
}

export async function measureLease(
  settings: { durationS: number; pairs: number; tool: Tool },
  log: (line: string) => void,
): Promise<{ failover: LeaseFailoverFigures[]; cost: LeaseCostFigures }> {
  const etcd = await LocalEtcd.start();
  try {
    const failover: LeaseFailoverFigures[] = [];
    for (const ttl of ttlsMs) failover.push(await measureTtl(etcd, ttl, log));
    const cost = await measureCost(etcd, settings);
    return { failover, cost };
  } finally {
    await etcd.close();
  }
}

/** The lease tables' rows (headers first) and how many TTLs missed their target. */
export function leaseTables(figures: { failover: LeaseFailoverFigures[]; cost: LeaseCostFigures }): { rows: string[][]; cost: string[][]; failures: number } {
  const rows = [['lease_ttl_ms', 'kills', 'median ms', 'worst ms', 'target ms', 'missed', 'result']];
  let failures = 0;
  for (const f of figures.failover) {
    const ok = f.missed === 0 && f.gaps_ms.length === kills;
    if (!ok) failures++;
    rows.push([
      String(f.ttl_ms),
      String(f.gaps_ms.length),
      f.median_ms.toFixed(0),
      f.worst_ms.toFixed(0),
      String(f.target_ms),
      String(f.missed),
      ok ? 'pass' : 'MISS',
    ]);
  }
  const c = figures.cost;
  const cost = [
    ['writes at the primary', 'req/s', 'cpu us/req'],
    ['coordinator on', c.on_req_s.toFixed(0), c.on_cpu_us_req.toFixed(1)],
    ['coordinator off', c.off_req_s.toFixed(0), c.off_cpu_us_req.toFixed(1)],
    ['on/off', (c.on_req_s / c.off_req_s).toFixed(3), (c.on_cpu_us_req / c.off_cpu_us_req).toFixed(3)],
  ];
  return { rows, cost, failures };
}
