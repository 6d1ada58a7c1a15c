// `npm run chaos -- --seconds N --seed S [--history FILE] [--no-partitions] [--coordinator]`: one chaos run (chaos-run.ts)
// from the command line. Prints the faults applied, the operations, one line per property of the history
// (history-check.ts) and the writes lost with deleted data dirs apart, and exits 1 when a property fails.
// The format of the history file, and how to read a failure: docs/chaos.md.

import { parseArgs } from 'node:util';
import { propertyLine } from './history-check.js';
import { type ChaosReport, runChaos } from './chaos-run.js';
import { etcdUnavailable } from './local-etcd.js';

/** The whole run's bound beyond its own seconds: start-up, the last faults' restarts, settling and reads. */
const overrunMsMax = 300_000;
const secondsMax = 86_400;

function usage(message: string): never {
  process.stderr.write(`chaos: ${message}\nusage: npm run chaos -- --seconds N --seed S [--history FILE] [--no-partitions] [--coordinator]\n`);
  process.exit(2);
}

function wholeNumber(text: string | undefined, name: string, fallback: number, max: number): number {
  if (text === undefined) return fallback;
  if (!/^\d{1,10}$/.test(text) || Number(text) > max) usage(`--${name} must be a whole number from 0 to ${max}, got ${JSON.stringify(text)}`);
  return Number(text);
}

function print(report: ChaosReport): void {
  const lines = [
    `seed ${report.seed}, ${report.seconds} s, ${report.coordinator ? 'etcd leases decide primaries' : 'no coordinator'}${report.partitionsUnavailable === undefined ? '' : ` (no host cut off: ${report.partitionsUnavailable})`}`,
    `faults: ${report.faults.applied} applied, ${report.faults.skipped} skipped, ${report.faults.notReached} not reached, of ${report.faults.scheduled}`,
    `applied: ${Object.entries(report.applied)
      .map(([action, n]) => `${action} ${n}`)
      .join(', ')}`,
    `operations: ${report.operations.writes} writes (${report.operations.acknowledged} acknowledged, ${report.operations.withEpoch} with an epoch), ${report.operations.reads} reads`,
    `epochs that acknowledged writes, over all shards: ${report.epochsAcknowledged} (the acknowledging member changed ${report.primaryChanges} times)`,
    `members that exited by themselves: ${report.crashes}; final reads without an answer: ${report.final.unreadable}`,
    ...report.results.map(propertyLine),
    `writes lost with a deleted data dir: ${report.lostWithDeletedDataDirs}`,
    ...report.results.flatMap((r) => r.violations.slice(0, 5).map((v) => `  ${r.property}: ${v}`)),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string' },
      seed: { type: 'string' },
      history: { type: 'string' },
      'no-partitions': { type: 'boolean' },
      coordinator: { type: 'boolean' },
    },
    strict: true,
  }).valueOf() as { values: { seconds?: string; seed?: string; history?: string; 'no-partitions'?: boolean; coordinator?: boolean } };
  const seconds = wholeNumber(values.seconds, 'seconds', 60, secondsMax);
  if (seconds < 10) usage('--seconds must be at least 10: the faults need room');
  const noEtcd = values.coordinator === true ? etcdUnavailable() : undefined;
  if (noEtcd !== undefined) usage(`--coordinator needs etcd: ${noEtcd}`);
  const seed = wholeNumber(values.seed, 'seed', Math.floor(Math.random() * 2 ** 31), 2 ** 32 - 1);
  let cleanup: () => Promise<void> = async () => undefined;
  const stop = (why: string, code: number) => {
    process.stderr.write(`chaos: ${why}; stopping the cluster\n`);
    cleanup().finally(() => process.exit(code));
  };
  // The run stops by itself: a cluster that never settles must not hold the machine.
  const watchdog = setTimeout(() => stop(`the run exceeded ${seconds} s + ${overrunMsMax / 1000} s`, 3), seconds * 1_000 + overrunMsMax);
  process.once('SIGINT', () => stop('SIGINT', 130));
  process.once('SIGTERM', () => stop('SIGTERM', 143));
  const report = await runChaos({
    seconds,
    seed,
    historyFile: values.history,
    partitions: values['no-partitions'] !== true,
    coordinator: values.coordinator === true,
    log: (line) => process.stderr.write(`${line}\n`),
    onCleanup: (fn) => {
      cleanup = fn;
    },
  });
  clearTimeout(watchdog);
  print(report);
  if (values.history !== undefined) process.stdout.write(`history: ${values.history}\n`);
  process.exit(report.passed ? 0 : 1);
}

main().catch((err: unknown) => {
  process.stderr.write(`chaos: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(70);
});
