// One chaos run (issue 27): a 3-shard cluster of real kvshard processes, writers and readers, and a
// seeded schedule of faults; at the end the final state, the history file and the checker's verdict.
// With a coordinator (issue 28) the cluster also has an etcd of its own, and etcd's restarts and
// partitions join the faults. chaos.ts is its command line; test/integration/chaos.test.ts and
// chaos-coordinator.test.ts run it too.

import { writeFileSync } from 'node:fs';
import { LocalCluster, type ShardLayout } from './local-cluster.js';
import { checkHistory, type PropertyResult } from './history-check.js';
import { faultSchedule } from './chaos-schedule.js';
import { ChaosMembers } from './chaos-members.js';
import { actionCounts, FaultRunner } from './chaos-faults.js';
import { ChaosHosts, hostsUnavailable } from './chaos-hosts.js';
import { LocalEtcd } from './local-etcd.js';
import { buildHistory, finalState, type FinalState } from './chaos-end.js';
import { defaultBounds, type ShardMembers, Workload } from './chaos-workload.js';

export interface ChaosOptions {
  readonly seconds: number;
  readonly seed: number;
  /** Where the history file goes; none when undefined. */
  readonly historyFile?: string;
  /** Whether to cut hosts off (network namespaces) when this machine can: default true. */
  readonly partitions?: boolean;
  /** Whether etcd's leases decide the primaries (a `[coordinator]` section, and etcd's faults): default false. */
  readonly coordinator?: boolean;
  /** Progress lines (default: none). */
  readonly log?: (line: string) => void;
  /**
   * Given, once the cluster exists, what stops its processes and removes its hosts and files: for a
   * caller that must stop a run that overran, or on a signal, without waiting for it.
   */
  readonly onCleanup?: (cleanup: () => Promise<void>) => void;
}

export interface ChaosReport {
  readonly seed: number;
  readonly seconds: number;
  readonly coordinator: boolean;
  /** Why no host was cut off, when none was. */
  readonly partitionsUnavailable: string | undefined;
  /** How many times each fault action was applied (kill -9, start, failover ..., delete data dir, link down). */
  readonly applied: Record<string, number>;
  readonly faults: { readonly scheduled: number; readonly applied: number; readonly skipped: number; readonly notReached: number };
  readonly operations: { readonly writes: number; readonly acknowledged: number; readonly withEpoch: number; readonly reads: number };
  /** Distinct (shard, epoch) pairs that acknowledged writes: each failover, by command or by itself, adds one. */
  readonly epochsAcknowledged: number;
  /** Per shard, in epoch order, how often the member acknowledging writes differs from the epoch before's. */
  readonly primaryChanges: number;
  readonly crashes: number;
  readonly final: Pick<FinalState, 'settled' | 'unreadable' | 'replicasEqual'>;
  readonly results: PropertyResult[];
  readonly lostWithDeletedDataDirs: number;
  readonly passed: boolean;
}

const shardCount = 3;
const writersPerShard = 2;
const keysPerWriter = 12;
const readers = 2;
/** A port every member listens on when each has a host of its own. */
const hostPort = 7100;
/** Requests per second of run the workload may send at most. */
const requestsPerSecondMax = 250;
/** The coordinator's lease: the shortest etcd grants, so that a run sees many failovers of its own. */
const leaseTtlMs = 2_000;
/** The name of etcd's host, beside the members'. */
const etcdHost = 'etcd';

interface ChaosCluster {
  readonly cluster: LocalCluster;
  readonly hosts: ChaosHosts | undefined;
  readonly etcd: LocalEtcd | undefined;
}

function coordinatorToml(etcd: LocalEtcd | undefined): string {
  return etcd?.coordinatorToml({ leaseTtlMs }) ?? '';
}

/**
 * The cluster, on hosts of its own when it can cut them off, else on loopback ports; with a coordinator,
 * its etcd on a host of its own too, or on loopback. On failure it removes what it made and throws.
 */
async function makeCluster(partitions: boolean, coordinator: boolean): Promise<ChaosCluster> {
  if (!partitions) {
    const etcd = coordinator ? await LocalEtcd.start() : undefined;
    try {
      return { cluster: await LocalCluster.create(shardCount, undefined, coordinatorToml(etcd)), hosts: undefined, etcd };
    } catch (err) {
      await etcd?.close();
      throw err;
    }
  }
  const names = Array.from({ length: shardCount }, (_, i) => `shard${i + 1}`);
  const hosts = await ChaosHosts.create([...names.flatMap((n) => [`${n}-a`, `${n}-b`]), ...(coordinator ? [etcdHost] : [])]);
  let etcd: LocalEtcd | undefined;
  try {
    if (coordinator) {
      etcd = await LocalEtcd.startOnHost(hosts.address(etcdHost), hosts.execPrefix(etcdHost));
      hosts.bind(etcdHost, etcd.endpoint);
    }
  } catch (err) {
    await hosts.destroy();
    throw err;
  }
  const layout: ShardLayout[] = names.map((name) => ({
    name,
    address: `${hosts.address(`${name}-a`)}:${hostPort}`,
    replica: `${hosts.address(`${name}-b`)}:${hostPort}`,
  }));
  for (const s of layout) {
    hosts.bind(`${s.name}-a`, s.address);
    hosts.bind(`${s.name}-b`, s.replica);
  }
  const cluster = LocalCluster.onAddresses(layout, coordinatorToml(etcd), (shard, role) => hosts.execPrefix(`${shard}-${role === 'replica' ? 'b' : 'a'}`));
  return { cluster, hosts, etcd };
}

/** Runs the faults and the workload for `options.seconds`, then checks the history. */
export async function runChaos(options: ChaosOptions): Promise<ChaosReport> {
  const log = options.log ?? (() => undefined);
  const unavailable = options.partitions === false ? 'turned off' : hostsUnavailable();
  const coordinator = options.coordinator === true;
  const { cluster, hosts, etcd } = await makeCluster(unavailable === undefined, coordinator);
  let cleaned: Promise<void> | undefined;
  const cleanup = () => {
    cleaned ??= cluster
      .destroy()
      .finally(() => etcd?.close())
      .finally(() => hosts?.destroy());
    return cleaned;
  };
  options.onCleanup?.(cleanup);
  try {
    await cluster.startAll();
    const shards: ShardMembers[] = cluster.shards.map((s) => ({ name: s.name, a: s.address, b: s.replica }));
    const members = new ChaosMembers(cluster, shards);
    const windowMs = options.seconds * 1_000;
    const schedule = faultSchedule({
      seed: options.seed,
      faultWindowMs: windowMs,
      shards: shards.map((s) => s.name),
      partitions: hosts !== undefined,
      coordinator,
    });
    log(
      `chaos: seed ${options.seed}, ${options.seconds} s, ${schedule.length} faults scheduled; cluster in ${cluster.dir}` +
        (etcd === undefined ? '' : `, etcd at ${etcd.endpoint}`),
    );
    const startedAt = Date.now();
    const workload = new Workload(shards, startedAt, { ...defaultBounds, requestsMax: requestsPerSecondMax * options.seconds });
    const runner = new FaultRunner(members, () => Date.now() - startedAt, hosts, etcd);
    const stopWorkload = setTimeout(() => workload.stop(), windowMs);
    await Promise.all([runner.run(schedule, windowMs), workload.run(options.seed, writersPerShard, keysPerWriter, readers)]);
    clearTimeout(stopWorkload);
    log(`chaos: faults and workload done at ${Date.now() - startedAt} ms; settling`);
    const final = await finalState(members, runner, workload.keysByShard(writersPerShard, keysPerWriter));
    const results = checkHistory(buildHistory(workload.writes, runner, final));
    const report = summarize(options, unavailable, runner, workload, final, results);
    if (options.historyFile !== undefined) {
      const operations = [...workload.writes, ...workload.reads].sort((x, y) => x.invokedMs - y.invokedMs);
      const rollbackFiles = [...runner.rollbacks.values()];
      const history = { format: 'kvshard-chaos-history', version: 1, startedAt: new Date(startedAt).toISOString(), shards, report, schedule };
      writeFileSync(
        options.historyFile,
        `${JSON.stringify({ ...history, faults: runner.records, crashes: runner.crashes, dataDirLosses: runner.dataDirLosses, rollbackFiles, final, operations })}\n`,
      );
    }
    return report;
  } finally {
    await cleanup();
  }
}

function summarize(
  options: ChaosOptions,
  unavailable: string | undefined,
  runner: FaultRunner,
  workload: Workload,
  final: FinalState,
  results: PropertyResult[],
): ChaosReport {
  const acknowledged = workload.writes.filter((w) => w.outcome === 'ok');
  return {
    seed: options.seed,
    seconds: options.seconds,
    coordinator: options.coordinator === true,
    partitionsUnavailable: unavailable,
    applied: actionCounts(runner.records),
    faults: {
      scheduled: runner.records.length,
      applied: runner.records.filter((r) => r.outcome === 'applied').length,
      skipped: runner.records.filter((r) => r.outcome === 'skipped').length,
      notReached: runner.records.filter((r) => r.outcome === 'not-reached').length,
    },
    operations: {
      writes: workload.writes.length,
      acknowledged: acknowledged.length,
      withEpoch: acknowledged.filter((w) => w.epoch !== undefined).length,
      reads: workload.reads.length,
    },
    epochsAcknowledged: new Set(acknowledged.filter((w) => w.epoch !== undefined).map((w) => `${w.shard}@${w.epoch}`)).size,
    primaryChanges: primaryChanges(acknowledged),
    crashes: runner.crashes.length,
    final: { settled: final.settled, unreadable: final.unreadable, replicasEqual: final.replicasEqual },
    results,
    lostWithDeletedDataDirs: results.find((r) => r.property === 'primary-acked-kept')?.excused ?? 0,
    passed: results.every((r) => r.violations.length === 0),
  };
}

/** How often, per shard and in epoch order, an epoch's acknowledging member differs from the previous epoch's. */
function primaryChanges(acknowledged: readonly { shard: string; epoch?: number; member: string }[]): number {
  const byShard = new Map<string, Map<number, string>>();
  for (const w of acknowledged) {
    if (w.epoch === undefined) continue;
    const epochs = byShard.get(w.shard) ?? new Map<number, string>();
    epochs.set(w.epoch, w.member);
    byShard.set(w.shard, epochs);
  }
  let changes = 0;
  for (const epochs of byShard.values()) {
    const members = [...epochs.entries()].sort(([x], [y]) => x - y).map(([, m]) => m);
    for (let i = 1; i < members.length; i++) if (members[i] !== members[i - 1]) changes++;
  }
  return changes;
}
