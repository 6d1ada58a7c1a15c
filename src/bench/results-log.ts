// The benchmark's history: every `npm run bench` run appends one JSON line to docs/bench-results.jsonl
// (tracked), naming the commit, the machine and each scenario's figures, so that a regression is found by
// comparing rows instead of reading prose. docs/performance.md describes the fields and how to compare.

import { appendFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { resolve } from 'node:path';
import { describeCheckout } from './baseline-build.js';
import type { ClientRoutingResult } from './client-bench.js';
import type { FailoverTiming } from './failover-bench.js';
import type { LoadResult } from './load-generator.js';
import type { Run, Settings } from './scenarios.js';
import { median } from './summary.js';

/** The file's format version: a reader that meets another skips the line. */
const formatVersion = 1;

/** The repository root of this build: dist/bench/ is two levels below it. */
const repoRoot = resolve(import.meta.dirname, '..', '..');

/** Where rows go unless --results names another file. */
export const defaultResultsFile = resolve(repoRoot, 'docs', 'bench-results.jsonl');

export type RunMode = 'full' | 'only' | 'ab' | 'client' | 'failover' | 'lease';

/** One scenario's figures: medians over the runs, the middle run's latencies, the ratio to the reference. */
export interface ScenarioFigures {
  readonly req_s: number;
  readonly p50_ms?: number;
  readonly p99_ms?: number;
  readonly cpu_us_req: number;
  readonly ref_req_s?: number;
  readonly ratio?: number;
  readonly errors?: number;
}

/** What a run measured, by mode: the fields a row carries besides who, where and how. */
export interface RunFigures {
  readonly scenarios?: Record<string, ScenarioFigures>;
  readonly ab?: { readonly ref: string; readonly scenarios: Record<string, { req_s_b_over_a: number; cpu_b_over_a: number; verdict: string }> };
  readonly client_routing?: readonly Record<string, number | string>[];
  readonly failover?: readonly Record<string, number | string | null>[];
  /** Automatic failover through etcd leases: kill -9 to the first write on the other member, by TTL, and the lease's cost. */
  readonly lease?: { readonly failover: readonly object[]; readonly cost: object };
  readonly lag?: Record<string, { p99_ms: number; zero_after_ms: number }>;
  readonly memory?: Record<string, { rss_mb: number; peak_mb: number }>;
  readonly bulk?: { keys: number; seconds: number; loaded_get_req_s: number };
  readonly failures?: number;
}

/** Rounds figures for the file: three significant decimals are more than the machine's noise resolves. */
function round(value: number): number {
  return Number.isFinite(value) ? Math.round(value * 1000) / 1000 : value;
}

function rounded(value: unknown): unknown {
  if (typeof value === 'number') return round(value);
  if (Array.isArray(value)) return value.map(rounded);
  if (value !== null && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, rounded(v)]));
  return value;
}

/** The command that ran, as a shell would take it back: arguments with spaces or quotes in single quotes. */
function commandLine(args: readonly string[]): string {
  const quoted = args.map((a) => (/^[\w./:=,@+-]+$/.test(a) ? a : `'${a.replaceAll("'", "'\\''")}'`));
  return args.length === 0 ? 'npm run bench' : `npm run bench -- ${quoted.join(' ')}`;
}

/** A figure not worth a field: absent, or an empty table (a run with no write scenario has no lag). */
function isEmpty(value: unknown): boolean {
  return value === undefined || (typeof value === 'object' && value !== null && Object.keys(value).length === 0);
}

/** Appends the row of one run. A failure to write is reported, never fatal: the printed table is the result. */
export async function recordRun(file: string, mode: RunMode, settings: Settings, figures: RunFigures): Promise<void> {
  const checkout = await describeCheckout(repoRoot).catch(() => 'unknown');
  const row = {
    v: formatVersion,
    source: 'npm run bench',
    commit: checkout.split(' ')[0],
    dirty: checkout.includes(' '),
    date: new Date().toISOString(),
    node: process.version,
    cores: cpus().length,
    cpu: cpus()[0]?.model ?? 'unknown',
    command: commandLine(process.argv.slice(2)),
    mode,
    tool: settings.tool,
    duration_s: settings.durationS,
    pairs: settings.pairs,
    ...(rounded(Object.fromEntries(Object.entries(figures).filter(([, v]) => !isEmpty(v)))) as RunFigures),
  };
  try {
    appendFileSync(file, `${JSON.stringify(row)}\n`);
    process.stderr.write(`results appended to ${file}\n`);
  } catch (err) {
    process.stderr.write(`could not append the results to ${file}: ${(err as Error).message}\n`);
  }
}

/** One measured scenario as bench.ts holds it. */
export interface MeasuredScenario {
  readonly scenario: string;
  readonly runs: readonly Run[];
  readonly refs: readonly LoadResult[];
  /** Median over pairs of kvshard req/s divided by the reference's in the same pair. */
  readonly ratio: number;
  /** Median over runs of the serving process's CPU µs per request. */
  readonly cpuUsPerReq: number;
  readonly lag?: { p99Ms: number; zeroAfterMs: number };
}

/** The scenarios' figures as the printed table shows them: medians, the middle run's latencies. */
export function scenarioFigures(results: readonly MeasuredScenario[]): Record<string, ScenarioFigures> {
  return Object.fromEntries(
    results.map((r) => {
      const mid = r.runs[Math.floor((r.runs.length - 1) / 2)]!;
      const figures: ScenarioFigures = {
        req_s: median(r.runs.map((x) => x.requestsPerSec)),
        p50_ms: mid.p50Ms,
        p99_ms: mid.p99Ms,
        cpu_us_req: r.cpuUsPerReq,
        ref_req_s: median(r.refs.map((x) => x.requestsPerSec)),
        ratio: r.ratio,
        errors: r.runs.reduce((n, x) => n + x.non2xx + x.errors, 0),
      };
      return [r.scenario, figures];
    }),
  );
}

export function lagFigures(results: readonly MeasuredScenario[]): Record<string, { p99_ms: number; zero_after_ms: number }> {
  return Object.fromEntries(results.filter((r) => r.lag).map((r) => [r.scenario, { p99_ms: r.lag!.p99Ms, zero_after_ms: r.lag!.zeroAfterMs }]));
}

export function clientRoutingFigures(routing: readonly ClientRoutingResult[]): Record<string, number | string>[] {
  return routing.map((r) => ({
    op: r.op,
    on_req_s: median(r.on),
    off_req_s: median(r.off),
    ratio: r.ratio,
    cpu_us_on: r.cpuOn,
    cpu_us_off: r.cpuOff,
    busiest_cpu_us_on: r.busiestOn,
    busiest_cpu_us_off: r.busiestOff,
    errors: r.errors,
  }));
}

export function failoverFigures(timings: readonly FailoverTiming[]): Record<string, number | string | null>[] {
  return timings.map((t) => ({
    kind: t.kind,
    exit: t.exitCode,
    command_ms: t.commandMs,
    resumed_after_ms: t.resumedAfterMs,
    longest_gap_ms: t.longestGapMs,
    refused: t.refused,
    lost: t.lost ?? null,
  }));
}
