// Issue 27's chaos run, 90 seconds with a fixed seed: a 3-shard cluster of real processes under kill -9
// and restarts of members and of whole shards, switchovers, forced failovers, data-dir loss and, as
// root with `ip`, members cut off the network, while writers (ack=primary and ack=replica) and readers
// run. The faults must really have happened, and every property of the history must hold: acknowledged
// writes readable (or, for ack=primary, in a rollback file), one writer per epoch, no acknowledgement at
// a stale epoch, and replicas equal to primaries at the end. The history file of a failed run is kept
// and named in the failure; docs/chaos.md says how to read it.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { propertyLine } from '../../src/harness/history-check.js';
import { runChaos } from '../../src/harness/chaos-run.js';

const seed = 27;
const seconds = 90;
/** The run, then start-up, the last faults' restarts, settling, the final reads and verify. */
const testTimeoutMs = 420_000;
/** Operations a 90 s run makes at the least, with every member down some of the time. */
const operationsMin = 2_000;

const dir = mkdtempSync(join(tmpdir(), 'kvshard-chaos-'));
const historyFile = join(dir, `chaos-${seed}.json`);
let cleanup: (() => Promise<void>) | undefined;
let keepHistory = false;

afterAll(async () => {
  await cleanup?.();
  if (!keepHistory) rmSync(dir, { recursive: true, force: true });
});

it(
  `keeps every property under ${seconds} s of faults (seed ${seed})`,
  async () => {
    const report = await runChaos({
      seconds,
      seed,
      historyFile,
      onCleanup: (fn) => {
        cleanup = fn;
      },
    });
    keepHistory = !report.passed;
    const summary = [
      JSON.stringify({ applied: report.applied, faults: report.faults, operations: report.operations, crashes: report.crashes, final: report.final }),
      ...report.results.map(propertyLine),
      `writes lost with a deleted data dir: ${report.lostWithDeletedDataDirs}`,
      ...report.results.flatMap((r) => r.violations.slice(0, 5).map((v) => `  ${r.property}: ${v}`)),
      `history: ${historyFile}`,
    ].join('\n');
    console.log(summary);
    expect(report.applied['kill -9'] ?? 0, summary).toBeGreaterThan(0);
    expect(report.applied['start'] ?? 0, summary).toBeGreaterThan(0);
    expect(report.operations.writes + report.operations.reads, summary).toBeGreaterThan(operationsMin);
    expect(report.operations.acknowledged, summary).toBeGreaterThan(operationsMin / 4);
    expect(report.results.filter((r) => r.violations.length > 0).map(propertyLine), summary).toEqual([]);
  },
  testTimeoutMs,
);
