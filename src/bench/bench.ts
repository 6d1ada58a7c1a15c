// npm run bench: starts a real cluster from a temporary config and data dir, loads it, measures each
// scenario against a bare node:http reference in alternating pairs, and prints one table of req/s,
// latency, the serving process's CPU per request, errors and ratios against the targets. Stops
// everything it started.
//
//   npm run bench [-- --quick] [-- --json FILE] [-- --tool wrk|autocannon] [-- --only TEXT] [-- --ab REF]
//   npm run bench -- --only client --node-cpu 0.25
//
// Every run appends one JSON line of its figures to docs/bench-results.jsonl (results-log.ts), or to the
// file --results FILE names.
//
// --only TEXT runs just the scenarios whose name contains TEXT (and no bulk load): a quick check while
// optimizing one path. Such a partial run reports its scenarios but does not judge the targets;
// `--only failover` runs just the failover measurement (failover-bench.ts), which a full run ends with;
// `--only lease` just the automatic failover through etcd leases (lease-bench.ts; needs etcd-server);
// `--only client` just the client-routing measurement (client-bench.ts). With `--node-cpu CORES` that
// measurement limits every node to the same share of a core, as if each ran on a machine of its own
// (cpu-quota.ts); it needs root and a cgroup cpu controller.
// --ab REF compares this checkout's build with REF's (a git ref or another checkout) instead of with the
// reference: see ab-compare.ts. `--ab metrics --only GET` compares this checkout with metrics off (A) and
// on (B): what counting requests for /metrics costs.

import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { freePort, LocalCluster, nodeFlags } from '../harness/local-cluster.js';
import { runAb } from './ab-compare.js';
import { failoverTable, measureFailover, type FailoverTiming } from './failover-bench.js';
import { leaseTables, measureLease } from './lease-bench.js';
import { clientRoutingTable, measureClientRouting, type ClientRoutingResult } from './client-bench.js';
import { CpuQuotas } from './cpu-quota.js';
import { bulkKey, detectTool, runBulk, runLoad, type LoadResult, type RequestMix } from './load-generator.js';
import {
  chosenScenarios,
  closeHttpGets,
  connections,
  httpGet,
  measuredRun,
  ownedTags,
  preloadGetKeys,
  shardCount,
  value100,
  warmUp,
  type Run,
  type Scenario,
  type Settings,
} from './scenarios.js';
import { clientRoutingFigures, defaultResultsFile, failoverFigures, lagFigures, type MeasuredScenario, recordRun, scenarioFigures } from './results-log.js';
import { rssMb, withLagSampling } from './probes.js';
import { formatTable, median } from './summary.js';

/** A scenario's runs and medians: the shape results-log.ts turns into a row. */
type Measured = MeasuredScenario;

async function startReference(): Promise<{ url: string; proc: ChildProcess }> {
  const port = await freePort();
  // Same V8 flags as kvshard's nodes: it idles between its runs, as they do, under the same conditions.
  const proc = spawn(process.execPath, [...nodeFlags, new URL('./reference-server.js', import.meta.url).pathname, String(port)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    proc.stdout!.once('data', () => resolve());
    proc.once('exit', (code) => reject(new Error(`reference server exited with ${code}`)));
  });
  return { url: `http://127.0.0.1:${port}`, proc };
}

/**
 * Writes `count` keys with 100-byte values, a third to each shard's primary at once (hash tags pin
 * each loader's keys to its shard). Resolves with the wall time and the keys of shard1's loader.
 */
async function bulkLoad(cluster: LocalCluster, count: number): Promise<{ ms: number; shard1Keys: string[]; results: LoadResult[] }> {
  const started = Date.now();
  const perShard = Math.ceil(count / shardCount);
  const prefixes = Array.from({ length: shardCount }, (_, idx) => ownedTags(idx, 64));
  const results = await Promise.all(
    prefixes.map((p, idx) =>
      runBulk({
        baseUrl: `http://${cluster.address(`shard${idx + 1}`, 'primary')}`,
        prefixes: p,
        value: value100,
        count: perShard,
        connections: Math.ceil(connections / shardCount),
      }),
    ),
  );
  const ms = Date.now() - started;
  const shard1Keys = Array.from({ length: 1000 }, (_, i) => bulkKey(prefixes[0]!, Math.floor((i * perShard) / 1000)));
  return { ms, shard1Keys, results };
}

async function measure(settings: Settings, cluster: LocalCluster, refUrl: string, scenario: Scenario): Promise<Measured> {
  const refMix: RequestMix = { gets: ['/'], setEvery: 0, setPrefixes: [''], setValue: '', setExtra: '' };
  await warmUp(settings, cluster, scenario);
  const runs: Run[] = [];
  const refs: LoadResult[] = [];
  const lags: { p99Ms: number; zeroAfterMs: number }[] = [];
  for (let pair = 0; pair < settings.pairs; pair++) {
    refs.push(await runLoad(settings.tool, { baseUrl: refUrl, mix: refMix, durationS: settings.durationS, connections }));
    if (scenario.lagShards.length > 0) {
      const { result, p99Ms, zeroAfterMs } = await withLagSampling(cluster, scenario.lagShards, measuredRun(settings, cluster, scenario));
      runs.push(result);
      lags.push({ p99Ms, zeroAfterMs });
    } else {
      runs.push(await measuredRun(settings, cluster, scenario));
    }
    const last = runs.at(-1)!;
    process.stderr.write(
      `  ${scenario.name}: ${last.requestsPerSec.toFixed(0)} req/s, ${last.cpuUsPerReq.toFixed(1)} cpu us/req (reference ${refs.at(-1)!.requestsPerSec.toFixed(0)} req/s)\n`,
    );
  }
  const ratio = median(runs.map((r, i) => r.requestsPerSec / refs[i]!.requestsPerSec));
  const lag = lags.length ? { p99Ms: Math.max(...lags.map((l) => l.p99Ms)), zeroAfterMs: Math.max(...lags.map((l) => l.zeroAfterMs)) } : undefined;
  return { scenario: scenario.name, runs, refs, ratio, cpuUsPerReq: median(runs.map((r) => r.cpuUsPerReq)), ...(lag ? { lag } : {}) };
}

/**
 * Pairs per scenario in an A/B comparison: at least the performance guard's three, and an even number,
 * so that each build runs first in as many pairs as the other (AB, BA, AB, BA). With three, B ran
 * second in two pairs of three, and a comparison of one build with itself flagged SET ack=replica as
 * worse (0.927 req/s, 1.041 CPU).
 */
const abPairsMin = 4;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      json: { type: 'string' },
      tool: { type: 'string' },
      only: { type: 'string' },
      ab: { type: 'string' },
      'node-cpu': { type: 'string' },
      results: { type: 'string', default: defaultResultsFile },
    },
  });
  const resultsFile = values.results;
  const onlyClient = values.only !== undefined && 'client routing'.includes(values.only.toLowerCase());
  if (values['node-cpu'] !== undefined && (!onlyClient || values.ab !== undefined)) throw new Error('--node-cpu goes with --only client (and without --ab)');
  const quotas = values['node-cpu'] === undefined ? undefined : new CpuQuotas(Number(values['node-cpu']));
  const tool = await detectTool(values.tool);
  const chosen: Settings = values.quick
    ? { durationS: 3, warmupS: 1, pairs: 1, bulkKeys: 100_000, tool }
    : { durationS: 10, warmupS: 2, pairs: 3, bulkKeys: 1_000_000, tool };
  // The performance guard takes the median of at least three pairs (four, for an even order), so --quick shortens only the runs of an A/B comparison.
  const settings: Settings = values.ab === undefined ? chosen : { ...chosen, pairs: Math.max(abPairsMin, chosen.pairs) };
  process.stderr.write(`kvshard bench: ${tool}, ${connections} connections, ${settings.durationS}s per run, ${settings.pairs} alternating pair(s)\n`);
  if (values.ab !== undefined) return runAb({ ref: values.ab, settings, only: values.only, jsonFile: values.json, resultsFile });
  if (values.only !== undefined && values.only.toLowerCase() === 'lease') return leaseOnly(settings, resultsFile);

  const cluster = await LocalCluster.started(shardCount);
  const reference = await startReference();
  // Interrupted runs still stop every process this benchmark started (by PID).
  const interrupted = (signal: string) => {
    process.stderr.write(`${signal}: stopping the cluster and the reference server\n`);
    void stopEverything(cluster, reference.proc, quotas).finally(() => process.exit(130));
  };
  process.once('SIGINT', () => interrupted('SIGINT'));
  process.once('SIGTERM', () => interrupted('SIGTERM'));
  try {
    if (values.only !== undefined && 'failover'.includes(values.only.toLowerCase())) {
      const timings = await measureFailover(cluster, (line) => process.stderr.write(`${line}\n`));
      process.stdout.write(`${formatTable(failoverTable(timings).rows)}\n`);
      await recordRun(resultsFile, 'failover', settings, { failover: failoverFigures(timings) });
      return;
    }
    if (onlyClient) return await clientOnly(cluster, settings, quotas, resultsFile);
    await preloadGetKeys(cluster);
    const results: Measured[] = [];
    for (const scenario of chosenScenarios(values.only)) results.push(await measure(settings, cluster, reference.url, scenario));
    if (values.only) {
      for (const r of results) {
        process.stdout.write(
          `${r.scenario}: ${median(r.runs.map((x) => x.requestsPerSec)).toFixed(0)} req/s, ${r.cpuUsPerReq.toFixed(1)} cpu us/req, ratio to reference ${r.ratio.toFixed(3)}\n`,
        );
      }
      await recordRun(resultsFile, 'only', settings, { scenarios: scenarioFigures(results), lag: lagFigures(results) });
      return;
    }

    await afterScenarios(settings, cluster, results, values.json, resultsFile);
  } finally {
    await stopEverything(cluster, reference.proc, quotas);
  }
}

/** `--only lease`: failover through etcd leases and what the lease costs writes (lease-bench.ts). */
async function leaseOnly(settings: Settings, resultsFile: string): Promise<void> {
  const figures = await measureLease(settings, (line) => process.stderr.write(`${line}\n`));
  const tables = leaseTables(figures);
  process.stdout.write(`${formatTable(tables.rows)}\n\n${formatTable(tables.cost)}\n`);
  await recordRun(resultsFile, 'lease', settings, { lease: figures, failures: tables.failures });
  if (tables.failures > 0) process.exitCode = 1;
}

/** A full run after its scenarios: the client routing, the bulk load and GETs over it, memory, failover; then the report and its row. */
async function afterScenarios(
  settings: Settings,
  cluster: LocalCluster,
  results: Measured[],
  jsonFile: string | undefined,
  resultsFile: string,
): Promise<void> {
  process.stderr.write('random keys through kvshard/client, routing on and off...\n');
  const clientRouting = await measureClientRouting(cluster, settings, (line) => process.stderr.write(`${line}\n`));
  process.stderr.write(`loading ${settings.bulkKeys} keys...\n`);
  const bulk = await bulkLoad(cluster, settings.bulkKeys);
  const loadMs = bulk.ms;
  const bulkErrors = bulk.results.reduce((n, r) => n + r.non2xx + r.errors, 0);
  if (bulkErrors > 0) throw new Error(`bulk load: ${bulkErrors} requests failed`);
  const bulkGets = bulk.shard1Keys.map((k) => `/get?key=${k}`);
  const loadedGet = await runLoad(settings.tool, {
    baseUrl: `http://${cluster.address('shard1', 'primary')}`,
    mix: { gets: bulkGets, setEvery: 0, setPrefixes: [''], setValue: '', setExtra: '' },
    durationS: settings.durationS,
    connections,
  });
  const memory = cluster.nodes().map(([shard, role]) => ({ node: `${shard}/${role}`, ...rssMb(cluster.pid(shard, role)) }));
  const statuses = await Promise.all(cluster.shards.map((s) => httpGet(`http://${s.address}/status`).then((r) => JSON.parse(r.body))));
  const keysLoaded = statuses.reduce((n, st) => n + st.keys, 0);
  // Last, since it leaves shard1's first member killed.
  process.stderr.write('failover of shard1 under write load...\n');
  const failover = await measureFailover(cluster, (line) => process.stderr.write(`${line}\n`));
  const failures = report(settings, results, { loadMs, loadedGet, memory, keysLoaded, failover, clientRouting }, jsonFile);
  await recordRun(resultsFile, 'full', settings, {
    scenarios: scenarioFigures(results),
    lag: lagFigures(results),
    client_routing: clientRoutingFigures(clientRouting),
    failover: failoverFigures(failover),
    memory: Object.fromEntries(memory.map((m) => [m.node, { rss_mb: m.rss, peak_mb: m.peak }])),
    bulk: { keys: settings.bulkKeys, seconds: loadMs / 1000, loaded_get_req_s: loadedGet.requestsPerSec },
    failures,
  });
}

/** Stops the reference server and the cluster by PID, then removes the nodes' cgroups, even when stopping failed. */
async function stopEverything(cluster: LocalCluster, reference: ChildProcess, quotas: CpuQuotas | undefined): Promise<void> {
  reference.kill('SIGTERM');
  try {
    await cluster.destroy();
  } finally {
    await quotas?.remove();
    closeHttpGets();
  }
}

/** `--only client`: the client-routing measurement alone, with every node held to its CPU quota if given. */
async function clientOnly(cluster: LocalCluster, settings: Settings, quotas: CpuQuotas | undefined, resultsFile: string): Promise<void> {
  if (quotas !== undefined) for (const [shard, role] of cluster.nodes()) quotas.limit(cluster.pid(shard, role));
  const routing = await measureClientRouting(cluster, settings, (line) => process.stderr.write(`${line}\n`));
  process.stdout.write(`${formatTable(clientRoutingTable(routing, quotas?.cores).rows)}\n`);
  await recordRun(resultsFile, 'client', settings, { client_routing: clientRoutingFigures(routing) });
}

interface Loaded {
  readonly loadMs: number;
  readonly loadedGet: LoadResult;
  readonly memory: { node: string; rss: number; peak: number; anon: number; file: number }[];
  /** Keys held by all primaries after the bulk load (scenario keys included). */
  readonly keysLoaded: number;
  readonly failover: FailoverTiming[];
  readonly clientRouting: ClientRoutingResult[];
}

/** A table of rows (the header first) and how many of its rows missed their target or were invalid. */
interface Table {
  readonly rows: string[][];
  readonly failures: number;
}

type Targets = Record<string, { value: number; target: string; ok: boolean }>;

/** The throughput targets, as ratios to the reference server or to GET at the owner. */
function throughputTargets(results: Measured[]): Targets {
  const byName = new Map(results.map((r) => [r.scenario, r]));
  const getOwner = byName.get('GET at the owner')!.ratio;
  return {
    'GET at the owner': { value: getOwner, target: '>= 0.75 of ref', ok: getOwner >= 0.75 },
    'GET at a replica': { value: byName.get('GET at a replica')!.ratio, target: '>= 0.75 of ref', ok: byName.get('GET at a replica')!.ratio >= 0.75 },
    'GET forwarded by a non-owner': {
      value: byName.get('GET forwarded by a non-owner')!.ratio / getOwner,
      target: '>= 0.40 of GET owner',
      ok: byName.get('GET forwarded by a non-owner')!.ratio / getOwner >= 0.4,
    },
    'SET new keys at the owner': {
      value: byName.get('SET new keys at the owner')!.ratio / getOwner,
      target: '>= 0.50 of GET owner',
      ok: byName.get('SET new keys at the owner')!.ratio / getOwner >= 0.5,
    },
  };
}

function scenarioTable(results: Measured[], targets: Targets): Table {
  const rows = [['scenario', 'req/s', 'p50 ms', 'p99 ms', 'cpu us/req', 'non-2xx', 'errors', 'ref req/s', 'ratio', 'target', 'result']];
  let failures = 0;
  for (const r of results) {
    const mid = r.runs[Math.floor((r.runs.length - 1) / 2)]!;
    const non2xx = r.runs.reduce((n, x) => n + x.non2xx, 0);
    const errors = r.runs.reduce((n, x) => n + x.errors, 0);
    const t = targets[r.scenario];
    const invalid = non2xx > 0 || errors > 0;
    if (invalid || (t && !t.ok)) failures++;
    rows.push([
      r.scenario,
      median(r.runs.map((x) => x.requestsPerSec)).toFixed(0),
      mid.p50Ms.toFixed(2),
      mid.p99Ms.toFixed(2),
      r.cpuUsPerReq.toFixed(1),
      String(non2xx),
      String(errors),
      median(r.refs.map((x) => x.requestsPerSec)).toFixed(0),
      (t?.value ?? r.ratio).toFixed(3),
      t?.target ?? '-',
      invalid ? 'INVALID: errors' : t ? (t.ok ? 'pass' : 'MISS') : '-',
    ]);
  }
  return { rows, failures };
}

function lagTable(results: Measured[]): Table {
  const rows = [['write scenario', 'lag p99 ms', 'zero lag after stop ms', 'target', 'result']];
  let failures = 0;
  for (const r of results.filter((x) => x.lag)) {
    const ok = r.lag!.p99Ms < 200 && r.lag!.zeroAfterMs <= 1000;
    if (!ok) failures++;
    rows.push([r.scenario, r.lag!.p99Ms.toFixed(0), r.lag!.zeroAfterMs.toFixed(0), 'p99 < 200, zero <= 1000', ok ? 'pass' : 'MISS']);
  }
  return { rows, failures };
}

function memoryTable(memory: Loaded['memory']): Table {
  const rows = [['process', 'RSS MB', 'private MB', 'mapped file MB', 'peak RSS MB', 'target', 'result']];
  let failures = 0;
  for (const m of memory) {
    const ok = m.rss < 150;
    if (!ok) failures++;
    rows.push([m.node, m.rss.toFixed(0), m.anon.toFixed(0), m.file.toFixed(0), m.peak.toFixed(0), 'RSS < 150 MB', ok ? 'pass' : 'MISS']);
  }
  return { rows, failures };
}

/** Prints the report; returns how many targets were missed or runs invalid. */
function report(settings: Settings, results: Measured[], loaded: Loaded, jsonFile: string | undefined): number {
  const scenarios = scenarioTable(results, throughputTargets(results));
  const lag = lagTable(results);
  const memory = memoryTable(loaded.memory);
  const failover = failoverTable(loaded.failover);
  const routing = clientRoutingTable(loaded.clientRouting);
  let failures = scenarios.failures + lag.failures + memory.failures + failover.failures + routing.failures;
  const g = loaded.loadedGet;
  const loadedBad = g.non2xx > 0 || g.errors > 0;
  if (loadedBad) failures++;
  const out = [
    `kvshard benchmark: ${settings.tool}, ${connections} connections, ${settings.durationS}s runs, ${settings.pairs} alternating pair(s) with a bare node:http reference`,
    '',
    formatTable(scenarios.rows),
    '',
    formatTable(lag.rows),
    '',
    formatTable(routing.rows),
    '',
    `${settings.bulkKeys} keys loaded in ${(loaded.loadMs / 1000).toFixed(1)} s (${(settings.bulkKeys / (loaded.loadMs / 1000)).toFixed(0)} keys/s, durable), ` +
      `${loaded.keysLoaded} keys in the cluster; ` +
      `then GET at the owner: ${g.requestsPerSec.toFixed(0)} req/s, p99 ${g.p99Ms.toFixed(2)} ms${loadedBad ? ` INVALID (${g.non2xx} non-2xx, ${g.errors} errors)` : ''}`,
    '',
    formatTable(memory.rows),
    '',
    formatTable(failover.rows),
    '',
    failures === 0 ? 'all targets met' : `${failures} target(s) missed or run(s) invalid`,
  ].join('\n');
  process.stdout.write(`${out}\n`);
  if (jsonFile) writeFileSync(jsonFile, JSON.stringify({ settings, results, loaded, failures }, null, 2));
  return failures;
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
