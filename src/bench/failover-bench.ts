// The benchmark's failover measurement. While writers keep setting new keys of shard1 through shard2's
// primary (a non-owner, so every write follows the forwarder's view of which member is primary), it runs
// `kvshard failover` three times: a switchover, a switch back, and, after kill -9 of the primary, a forced
// failover. For each it times how long writes to the shard stop: from the command's start to the first
// write acknowledged after the last one refused. The target is that writes resume within 2 s of the
// command starting. Before the forced failover it reads back every write acknowledged so far: a
// switchover loses none.

import { spawn } from 'node:child_process';
import { sleep } from '../core/backoff.js';
import { cliPath, nodeFlags, type LocalCluster } from '../harness/local-cluster.js';
import { httpGet, ownedKeys } from './scenarios.js';

/** Writers at once: enough to keep the shard busy on two cores without starving the failover's own requests. */
const writers = 16;
/** Keys each writer may write: bounds the load and the memory its outcomes take. */
const keysPerWriter = 20_000;
/** How long a refused writer waits before its next write, so a refusing shard is not flooded. */
const retryDelayMs = 10;
/** Load before and after each failover, so the window is measured against steady writes on both sides. */
const settleMs = 1_000;
/** A failover command that has not finished by then has failed; it is stopped by its PID. */
const commandTimeoutMs = 30_000;
/** Writes resume within this long of the command starting: the target. */
export const resumeTargetMs = 2_000;

export interface FailoverTiming {
  readonly kind: string;
  readonly commandMs: number;
  readonly exitCode: number | null;
  readonly output: string;
  readonly refused: number;
  /** The refusals by status and error code. */
  readonly refusals: Record<string, number>;
  /** From the command's start to the first write acknowledged after the last refused one. */
  readonly resumedAfterMs: number;
  /** The longest time without an acknowledged write, from the command's start until writes resumed. */
  readonly longestGapMs: number;
  /** Acknowledged writes missing when read back (measured before the forced failover only). */
  readonly lost: number | undefined;
}

interface Outcome {
  readonly endMs: number;
  readonly ok: boolean;
  /** Why a write was refused: its status and error code, or the socket error. */
  readonly refusal?: string;
}

/** Writers setting new keys of one shard through one node, recording when each write ended and how. */
class WriteLoad {
  readonly outcomes: Outcome[] = [];
  readonly acked: string[] = [];
  private stopped = false;
  private readonly running: Promise<void>[];

  constructor(
    private readonly via: string,
    keys: string[],
  ) {
    this.running = Array.from({ length: writers }, (_, w) => this.writer(keys.slice(w * keysPerWriter, (w + 1) * keysPerWriter)));
  }

  private async writer(keys: string[]): Promise<void> {
    for (const key of keys) {
      if (this.stopped) return;
      const refusal = await httpGet(`http://${this.via}/set?key=${key}&value=${key}`).then(
        (res) => (res.status === 200 ? undefined : `${res.status} ${/"error":"(\w+)"/.exec(res.body)?.[1] ?? ''}`),
        (err: Error) => err.message,
      );
      const ok = refusal === undefined;
      this.outcomes.push(ok ? { endMs: performance.now(), ok } : { endMs: performance.now(), ok, refusal });
      if (ok) this.acked.push(key);
      else await new Promise((r) => setTimeout(r, retryDelayMs));
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.running);
  }
}

/** Runs the kvshard CLI with `args`; stops it by its PID if it outlives commandTimeoutMs. */
function runCli(args: readonly string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...nodeFlags, cliPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), commandTimeoutMs);
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output: output.trim() });
    });
  });
}

/** Runs one failover command under `load` and times the window in which writes did not go through. */
async function timedFailover(cluster: LocalCluster, load: WriteLoad, kind: string, force: boolean): Promise<Omit<FailoverTiming, 'lost'>> {
  const started = performance.now();
  const from = load.outcomes.length;
  const { code, output } = await runCli(['failover', '--config', cluster.configPath, '--shard', 'shard1', ...(force ? ['--force'] : [])]);
  const commandMs = performance.now() - started;
  await sleep(settleMs);
  const after = load.outcomes.slice(from).filter((o) => o.endMs >= started);
  const refusals: Record<string, number> = {};
  let refused = 0;
  let lastRefused = started;
  for (const o of after) {
    if (o.refusal === undefined) continue;
    refusals[o.refusal] = (refusals[o.refusal] ?? 0) + 1;
    refused++;
    lastRefused = Math.max(lastRefused, o.endMs);
  }
  const resumed = after.find((o) => o.ok && o.endMs > lastRefused)?.endMs ?? Number.NaN;
  let longestGapMs = 0;
  let previous = started;
  for (const o of after) {
    if (o.endMs > resumed) break;
    if (!o.ok) continue;
    longestGapMs = Math.max(longestGapMs, o.endMs - previous);
    previous = o.endMs;
  }
  longestGapMs = Math.max(longestGapMs, resumed - previous);
  return { kind, commandMs, exitCode: code, output, refused, refusals, resumedAfterMs: resumed - started, longestGapMs };
}

/** Reads back every acknowledged key through `via`, 64 at a time; returns how many are missing. */
async function missing(via: string, keys: readonly string[]): Promise<number> {
  let lost = 0;
  for (let i = 0; i < keys.length; i += 64) {
    const answers = await Promise.all(keys.slice(i, i + 64).map((k) => httpGet(`http://${via}/get?key=${k}`)));
    lost += answers.filter((a, j) => a.status !== 200 || a.body !== keys[i + j]).length;
  }
  return lost;
}

/**
 * Switches shard1 over and back, then kills its primary and forces a failover, all under write load.
 * Leaves shard1's first member dead: the caller destroys the cluster afterwards.
 */
export async function measureFailover(cluster: LocalCluster, log: (line: string) => void): Promise<FailoverTiming[]> {
  const via = cluster.address('shard2', 'primary');
  const load = new WriteLoad(via, ownedKeys(0, writers * keysPerWriter, 'fo'));
  const timings: FailoverTiming[] = [];
  try {
    await sleep(settleMs);
    for (const kind of ['switchover', 'switch back']) {
      const t = await timedFailover(cluster, load, kind, false);
      log(`  ${kind}: exit ${t.exitCode}, writes resumed after ${t.resumedAfterMs.toFixed(0)} ms, refused ${JSON.stringify(t.refusals)}: ${t.output}`);
      timings.push({ ...t, lost: undefined });
    }
    const acked = [...load.acked];
    const lost = await missing(via, acked);
    log(`  ${acked.length} writes acknowledged across both switchovers, ${lost} missing`);
    timings[0] = { ...timings[0]!, lost };
    timings[1] = { ...timings[1]!, lost };
    await cluster.kill('shard1', 'primary');
    await sleep(settleMs);
    const forced = await timedFailover(cluster, load, 'forced, after kill -9', true);
    log(
      `  forced: exit ${forced.exitCode}, writes resumed after ${forced.resumedAfterMs.toFixed(0)} ms, refused ${JSON.stringify(forced.refusals)}: ${forced.output}`,
    );
    timings.push({ ...forced, lost: undefined });
  } finally {
    await load.stop();
  }
  return timings;
}

/** The failover table's rows (the header first) and how many missed their target. */
export function failoverTable(timings: readonly FailoverTiming[]): { rows: string[][]; failures: number } {
  const rows = [['failover of shard1', 'command ms', 'refused writes', 'resumed after ms', 'longest gap ms', 'acked lost', 'target', 'result']];
  let failures = 0;
  for (const t of timings) {
    const ok = t.exitCode === 0 && t.resumedAfterMs <= resumeTargetMs && (t.lost ?? 0) === 0;
    if (!ok) failures++;
    rows.push([
      t.kind,
      t.commandMs.toFixed(0),
      String(t.refused),
      t.resumedAfterMs.toFixed(0),
      t.longestGapMs.toFixed(0),
      t.lost === undefined ? '-' : String(t.lost),
      `resumed <= ${resumeTargetMs}${t.lost === undefined ? '' : ', lost 0'}`,
      ok ? 'pass' : 'MISS',
    ]);
  }
  return { rows, failures };
}
