// The benchmark's client-routing measurement: random keys through kvshard/client, routing on (each
// request sent to its key's node) against the same client with routing off (every request to shard1's
// primary, which forwards the two thirds it does not own). Both arms are the same load generator in this
// process: `inFlight` calls at once for a fixed time, in alternating pairs. Targets: routing on at least
// 2.5x the req/s of routing off for SET and 1.5x for GET. Beside req/s it reports the CPU one call costs
// the whole cluster and the client together (on two shared cores that sum bounds req/s) and the CPU of the
// busiest node alone (what bounds req/s when each node has CPU of its own: bench --node-cpu).

import { KvClient } from '../client/index.js';
import type { LocalCluster } from '../harness/local-cluster.js';
import { clockTicksPerSec, cpuTicks } from './process-cpu.js';
import { connections, value100, type Settings } from './scenarios.js';
import { median } from './summary.js';

/** Calls in flight at once in each arm: the benchmark's usual 64 connections' worth. */
const inFlight = connections;
/** Keys the GET arms read, written through the client before the first pair. */
const getKeys = 3_000;
/** Calls per run at most: bounds a run on a machine far faster than this one. */
const callsPerRunMax = 2_000_000;

export const clientTargets: Record<string, number> = { SET: 2.5, GET: 1.5 };

export interface ClientRoutingResult {
  readonly op: 'SET' | 'GET';
  /** Per pair: req/s with routing on and with routing off. */
  readonly on: number[];
  readonly off: number[];
  /** Median over pairs of on / off in the same pair. */
  readonly ratio: number;
  readonly errors: number;
  /** Median CPU µs per call, summed over every node and this process (the client): routing on, off. */
  readonly cpuOn: number;
  readonly cpuOff: number;
  /** Median CPU µs per call of the busiest node alone: what bounds req/s when each node has CPU of its own. */
  readonly busiestOn: number;
  readonly busiestOff: number;
}

interface ArmRun {
  readonly perSec: number;
  readonly errors: number;
  /** CPU µs per call of every node and of this process together. */
  readonly cpuUs: number;
  /** CPU µs per call of the node that spent the most. */
  readonly busiestUs: number;
}

/** `inFlight` loops calling `call` with a fresh random number for `durationS` seconds. */
async function drive(durationS: number, call: (n: number) => Promise<unknown>): Promise<{ done: number; perSec: number; errors: number }> {
  let done = 0;
  let errors = 0;
  const stopAt = performance.now() + durationS * 1000;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (performance.now() < stopAt && done < callsPerRunMax) {
        try {
          await call(Math.floor(Math.random() * 2 ** 31));
          done++;
        } catch {
          errors++;
        }
      }
    }),
  );
  return { done, perSec: done / ((performance.now() - started) / 1000), errors };
}

/** CPU µs so far of each node's process, and of this one last. */
function cpuUsOf(pids: readonly number[]): number[] {
  const self = process.cpuUsage();
  return [...pids.map((pid) => (cpuTicks(pid) / clockTicksPerSec()) * 1e6), self.user + self.system];
}

function arm(cluster: LocalCluster, routing: boolean): KvClient {
  return new KvClient({ endpoints: [cluster.address('shard1', 'primary')], routing, connectionsPerNode: inFlight, timeoutMs: 10_000 });
}

async function runArm(cluster: LocalCluster, op: 'SET' | 'GET', routing: boolean, durationS: number): Promise<ArmRun> {
  const client = arm(cluster, routing);
  try {
    await client.cluster();
    const call =
      op === 'SET'
        ? (n: number) => client.set(`cb-${routing ? 'on' : 'off'}-${n}`, value100)
        : async (n: number) => {
            if ((await client.get(`cbg-${n % getKeys}`)) === undefined) throw new Error('a preloaded key is missing');
          };
    // A short warm-up, so both arms start with open connections and optimized code.
    await drive(Math.min(1, durationS / 4), call);
    const pids = cluster.nodes().map(([shard, role]) => cluster.pid(shard, role));
    const before = cpuUsOf(pids);
    const run = await drive(durationS, call);
    const perCall = cpuUsOf(pids).map((us, i) => (us - before[i]!) / run.done);
    const sum = perCall.reduce((a, b) => a + b, 0);
    return { perSec: run.perSec, errors: run.errors, cpuUs: sum, busiestUs: Math.max(...perCall.slice(0, -1)) };
  } finally {
    await client.close();
  }
}

/** Measures both operations, routing on against off, in `settings.pairs` alternating pairs. */
export async function measureClientRouting(cluster: LocalCluster, settings: Settings, log: (line: string) => void): Promise<ClientRoutingResult[]> {
  const loader = arm(cluster, true);
  try {
    for (let i = 0; i < getKeys; i += inFlight) {
      await Promise.all(Array.from({ length: Math.min(inFlight, getKeys - i) }, (_, j) => loader.set(`cbg-${i + j}`, value100)));
    }
  } finally {
    await loader.close();
  }
  const results: ClientRoutingResult[] = [];
  for (const op of ['SET', 'GET'] as const) {
    const on: number[] = [];
    const off: number[] = [];
    const cpu = { on: [] as number[], off: [] as number[] };
    const busiest = { on: [] as number[], off: [] as number[] };
    let errors = 0;
    for (let pair = 0; pair < settings.pairs; pair++) {
      const order = pair % 2 === 0 ? [false, true] : [true, false];
      for (const routing of order) {
        const run = await runArm(cluster, op, routing, settings.durationS);
        (routing ? on : off).push(run.perSec);
        cpu[routing ? 'on' : 'off'].push(run.cpuUs);
        busiest[routing ? 'on' : 'off'].push(run.busiestUs);
        errors += run.errors;
      }
      log(`  ${op} through the client: routing on ${on.at(-1)!.toFixed(0)} req/s, off ${off.at(-1)!.toFixed(0)} req/s`);
    }
    results.push({
      op,
      on,
      off,
      ratio: median(on.map((x, i) => x / off[i]!)),
      errors,
      cpuOn: median(cpu.on),
      cpuOff: median(cpu.off),
      busiestOn: median(busiest.on),
      busiestOff: median(busiest.off),
    });
  }
  return results;
}

/**
 * The measurement as table rows (the header first) and how many rows missed their target or had errors;
 * `nodeCpu` names the share of a core each node had, when it was limited (bench --node-cpu).
 */
export function clientRoutingTable(results: readonly ClientRoutingResult[], nodeCpu?: number): { rows: string[][]; failures: number } {
  const rows = [
    [
      nodeCpu === undefined ? 'client, random keys' : `client, random keys, nodes at ${nodeCpu} core`,
      'routing on req/s',
      'routing off req/s',
      'on/off',
      'cpu us/req on',
      'cpu us/req off',
      'busiest node us/req on',
      'busiest node us/req off',
      'errors',
      'target',
      'result',
    ],
  ];
  let failures = 0;
  for (const r of results) {
    const target = clientTargets[r.op]!;
    const ok = r.ratio >= target && r.errors === 0;
    if (!ok) failures++;
    rows.push([
      r.op,
      median(r.on).toFixed(0),
      median(r.off).toFixed(0),
      r.ratio.toFixed(2),
      r.cpuOn.toFixed(0),
      r.cpuOff.toFixed(0),
      r.busiestOn.toFixed(0),
      r.busiestOff.toFixed(0),
      String(r.errors),
      `>= ${target}x`,
      ok ? 'pass' : r.errors > 0 ? 'INVALID: errors' : 'MISS',
    ]);
  }
  return { rows, failures };
}
