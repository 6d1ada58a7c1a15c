// Issue 28's chaos run: issue 27's run (chaos.test.ts) with etcd's leases deciding the primaries. The
// cluster has an etcd of its own, on a host of its own when this machine can make network namespaces,
// and etcd's faults join the members': etcd killed with kill -9 and started again, on its data or with
// its data deleted, and etcd's host cut off. A killed or cut-off primary is replaced with no command. The faults must really have happened,
// failovers must have happened beyond the commands', and every property of the history must hold.
//
// Needs etcd (Debian's etcd-server); without it the test is skipped, except under CI=true, where it fails.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { hostsUnavailable } from '../../src/harness/chaos-hosts.js';
import { propertyLine } from '../../src/harness/history-check.js';
import { runChaos } from '../../src/harness/chaos-run.js';
import { etcdUnavailable } from '../../src/harness/local-etcd.js';
import { needsTool } from '../helpers/tool-gate.js';

const runs = needsTool('chaos-coordinator.test.ts', 'the chaos run with a coordinator', etcdUnavailable());

const seed = 28;
const seconds = 60;
/** The run, then start-up, the last faults' restarts, settling, the final reads and verify. */
const testTimeoutMs = 360_000;
/** Operations a 60 s run makes at the least, with every member down some of the time. */
const operationsMin = 1_500;

const dir = mkdtempSync(join(tmpdir(), 'kvshard-chaos-coordinator-'));
const historyFile = join(dir, `chaos-coordinator-${seed}.json`);
let cleanup: (() => Promise<void>) | undefined;
let keepHistory = false;

afterAll(async () => {
  await cleanup?.();
  if (!keepHistory) rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!runs)('chaos with etcd leases deciding the primaries', () => {
  it(
    `keeps every property under ${seconds} s of faults, etcd's included (seed ${seed})`,
    async () => {
      const report = await runChaos({
        seconds,
        seed,
        historyFile,
        coordinator: true,
        onCleanup: (fn) => {
          cleanup = fn;
        },
      });
      keepHistory = !report.passed;
      const summary = [
        JSON.stringify({
          applied: report.applied,
          faults: report.faults,
          operations: report.operations,
          epochs: report.epochsAcknowledged,
          primaryChanges: report.primaryChanges,
          final: report.final,
        }),
        ...report.results.map(propertyLine),
        ...report.results.flatMap((r) => r.violations.slice(0, 5).map((v) => `  ${r.property}: ${v}`)),
        `history: ${historyFile}`,
      ].join('\n');
      console.log(summary);
      const applied = (action: string) => report.applied[action] ?? 0;
      expect(applied('kill -9'), summary).toBeGreaterThan(0);
      expect(applied('etcd kill -9'), summary).toBeGreaterThan(0);
      expect(applied('etcd delete data'), summary).toBeGreaterThan(0);
      expect(applied('etcd start'), summary).toBeGreaterThan(0);
      if (hostsUnavailable() === undefined) expect(applied('etcd link down'), summary).toBeGreaterThan(0);
      // Each failover a command made moved writes to the other member; writes moved more often than that,
      // so shards also failed over to their other member by themselves.
      const byCommand = applied('failover exit 0') + applied('failover --force exit 0');
      expect(report.primaryChanges, summary).toBeGreaterThan(byCommand);
      expect(report.operations.writes + report.operations.reads, summary).toBeGreaterThan(operationsMin);
      expect(report.operations.acknowledged, summary).toBeGreaterThan(operationsMin / 4);
      expect(report.results.filter((r) => r.violations.length > 0).map(propertyLine), summary).toEqual([]);
    },
    testTimeoutMs,
  );
});
