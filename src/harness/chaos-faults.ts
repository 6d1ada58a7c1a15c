// Carries out a chaos run's fault schedule (chaos-schedule.ts) on its members: one loop per shard, so
// faults of one shard never overlap, while faults of different shards may. Every step a fault takes is
// recorded with its time, so the history shows what really happened, including faults skipped because
// their precondition did not hold (a data dir is deleted only while the shard's other copy is complete).

import type { DataDirLoss } from './history-check.js';
import type { Fault } from './chaos-schedule.js';
import type { ChaosMembers, CommandOutcome, MemberName, RollbackFileRead } from './chaos-members.js';
import { sleep } from './chaos-http.js';

/** Cuts a member's host off the network and joins it again (chaos-hosts.ts), where the run can. */
export interface Network {
  cut(address: string): Promise<void>;
  heal(address: string): Promise<void>;
}

/** The run's etcd, when the cluster has a coordinator: killed, started again and cut off as a whole. */
export interface ChaosEtcd {
  /** Its client endpoint, `host:port`: what Network.cut() and heal() take for its host. */
  readonly endpoint: string;
  readonly running: boolean;
  kill(): Promise<void>;
  /** Starts it again on its data; rejects when it does not answer in time. */
  run(): Promise<void>;
  /** Deletes its data (it must be stopped). */
  deleteData(): void;
}

export interface FaultStep {
  readonly atMs: number;
  /**
   * kill -9, found exited (a crash seen as it was to be killed), start, start failed, failover, failover
   * --force, delete data dir, link down, link up; and etcd's: etcd kill -9, etcd delete data, etcd start (failed), etcd link
   * down, etcd link up.
   */
  readonly action: string;
  readonly member?: string;
  readonly detail?: string;
}

export interface FaultRecord {
  readonly fault: Fault;
  startedMs?: number;
  endedMs?: number;
  /** applied: its steps ran; skipped: its precondition did not hold; not-reached: due after the window. */
  outcome: 'applied' | 'skipped' | 'not-reached';
  reason?: string;
  /** Whether the shard was steady (one primary, its replica in sync) when the fault began. */
  steadyBefore?: boolean;
  readonly steps: FaultStep[];
}

/** A member that exited without being told to: a crash worth reading in the history. */
export interface CrashRecord {
  readonly atMs: number;
  readonly member: string;
  readonly output: string;
  /** Its start again, right after the crash was seen. */
  readonly restart: FaultStep[];
}

/** How long a shard may take to become steady before its next fault starts anyway. */
const steadyWaitMs = 15_000;
const pollMs = 250;
/** Starts of one member tried before giving up on it until the end of the run. */
const startAttemptsMax = 2;
/** How often members are checked for having exited by themselves. */
const crashCheckMs = 1_000;
/** A forced failover runs this long after its primary was stopped or cut off. */
const forceDelayMs = 1_500;

const other = (m: MemberName): MemberName => (m === 'a' ? 'b' : 'a');

export class FaultRunner {
  readonly records: FaultRecord[] = [];
  readonly dataDirLosses: DataDirLoss[] = [];
  readonly crashes: CrashRecord[] = [];
  /** Every rollback file seen, by path: read before a data dir is deleted, and again at the end. */
  readonly rollbacks = new Map<string, RollbackFileRead>();
  /** Members this runner stopped on purpose, and members being started: the crash check skips them. */
  private readonly down = new Set<string>();
  /** Starts of crashed members, awaited before run() resolves. */
  private readonly restarts: Promise<void>[] = [];
  /** Whether an etcd fault runs: the shards' loops may draw two at once, and etcd takes one at a time. */
  private etcdBusy = false;

  constructor(
    private readonly members: ChaosMembers,
    private readonly now: () => number,
    private readonly network: Network | undefined,
    private readonly etcd?: ChaosEtcd,
  ) {}

  /** Runs every fault due before `windowMs`; resolves once the last one has ended. */
  async run(schedule: readonly Fault[], windowMs: number): Promise<void> {
    let running = true;
    const crashCheck = (async () => {
      while (running) {
        this.checkCrashes();
        await sleep(crashCheckMs);
      }
    })();
    await Promise.all(
      this.members.shards.map((s) =>
        this.runShard(
          schedule.filter((f) => f.shard === s.name),
          windowMs,
        ),
      ),
    );
    running = false;
    await crashCheck;
    await Promise.all(this.restarts);
  }

  /** Starts etcd, if it is not running, and every member that is not (after the faults, before the final reads). */
  async startAll(): Promise<FaultStep[]> {
    const steps: FaultStep[] = [];
    if (this.etcd !== undefined && !this.etcd.running) await this.startEtcd(steps);
    for (const s of this.members.shards) {
      for (const m of ['a', 'b'] as const) if (!this.members.isRunning(s.name, m)) await this.start(s.name, m, steps);
    }
    return steps;
  }

  /** Reads every member's rollback files into `rollbacks`. */
  harvestRollbacks(shard: string, member: MemberName): void {
    for (const file of this.members.rollbackFiles(shard, member)) this.rollbacks.set(file.file, file);
  }

  private checkCrashes(): void {
    for (const s of this.members.shards) {
      for (const m of ['a', 'b'] as const) {
        if (this.down.has(`${s.name}-${m}`)) continue;
        const output = this.members.exitedByItself(s.name, m);
        if (output === undefined) continue;
        const crash: CrashRecord = { atMs: this.now(), member: this.members.address(s.name, m), output, restart: [] };
        this.crashes.push(crash);
        this.restarts.push(this.start(s.name, m, crash.restart));
      }
    }
  }

  private async runShard(faults: readonly Fault[], windowMs: number): Promise<void> {
    for (const fault of faults) {
      const record: FaultRecord = { fault, outcome: 'not-reached', steps: [] };
      this.records.push(record);
      await sleep(fault.atMs - this.now());
      if (this.now() >= windowMs) continue;
      record.steadyBefore = await this.waitSteady(fault.shard, steadyWaitMs);
      if (this.now() >= windowMs) continue;
      record.startedMs = this.now();
      record.outcome = 'applied';
      await this.apply(fault, record);
      record.endedMs = this.now();
    }
  }

  /** Waits until one member of `shard` serves as primary and the other as its replica, in sync. */
  async waitSteady(shard: string, timeoutMs: number): Promise<boolean> {
    const deadline = this.now() + timeoutMs;
    for (;;) {
      const [a, b] = await Promise.all([this.members.state(shard, 'a'), this.members.state(shard, 'b')]);
      const roles = [a?.role, b?.role].sort().join(',');
      const replica = a?.role === 'replica' ? a : b;
      if (roles === 'primary,replica' && replica?.inSync) return true;
      if (this.now() > deadline) return false;
      await sleep(pollMs);
    }
  }

  private step(record: FaultRecord | FaultStep[], action: string, member?: string, detail?: string): void {
    const steps = Array.isArray(record) ? record : record.steps;
    steps.push({ atMs: this.now(), action, ...(member === undefined ? {} : { member }), ...(detail === undefined ? {} : { detail }) });
  }

  private skip(record: FaultRecord, reason: string): void {
    record.outcome = 'skipped';
    record.reason = reason;
  }

  private async apply(fault: Fault, record: FaultRecord): Promise<void> {
    const { shard } = fault;
    switch (fault.kind) {
      case 'kill':
        return this.killAndRestart(record, [await this.members.memberServing(shard, fault.target)], fault.downMs);
      case 'switchover':
        return this.failover(record, false);
      case 'force-live':
        return this.failover(record, true);
      case 'force-dead':
        return this.killAndRestart(record, [await this.members.memberServing(shard, 'primary')], fault.downMs, () => this.failover(record, true));
      case 'restart-shard': {
        const first = await this.members.memberServing(shard, fault.first);
        return this.killAndRestart(record, [first, other(first)], fault.downMs);
      }
      case 'data-dir-loss':
        return this.dataDirLoss(record, await this.members.memberServing(shard, fault.target), fault.downMs);
      case 'partition':
        return this.partition(record, await this.members.memberServing(shard, fault.target), fault.downMs);
      case 'etcd-restart':
      case 'etcd-wipe':
        return this.etcdFault(record, async (etcd) => {
          await etcd.kill();
          this.step(record, 'etcd kill -9', etcd.endpoint);
          if (fault.kind === 'etcd-wipe') {
            etcd.deleteData();
            this.step(record, 'etcd delete data', etcd.endpoint);
          }
          await sleep(fault.downMs);
          await this.startEtcd(record.steps);
        });
      case 'etcd-partition':
        return this.etcdFault(record, async (etcd, network) => {
          // With a network, etcd runs on a host of its own in it (chaos-run.ts).
          if (network === undefined) return this.skip(record, 'no network namespaces on this machine');
          await network.cut(etcd.endpoint);
          this.step(record, 'etcd link down', etcd.endpoint);
          await sleep(fault.downMs);
          await network.heal(etcd.endpoint);
          this.step(record, 'etcd link up', etcd.endpoint);
        });
    }
  }

  /** Runs one fault of etcd, unless there is no etcd or another of its faults runs. */
  private async etcdFault(record: FaultRecord, fault: (etcd: ChaosEtcd, network: Network | undefined) => Promise<void>): Promise<void> {
    if (this.etcd === undefined) return this.skip(record, 'the cluster has no coordinator');
    if (this.etcdBusy) return this.skip(record, 'another fault of etcd runs');
    this.etcdBusy = true;
    try {
      await fault(this.etcd, this.network);
    } finally {
      this.etcdBusy = false;
    }
  }

  /** Starts etcd again, trying twice; an etcd that cannot start stays down until startAll(). */
  private async startEtcd(steps: FaultStep[]): Promise<void> {
    const etcd = this.etcd!;
    await this.startTrying(steps, 'etcd start', etcd.endpoint, { run: () => etcd.run(), running: () => etcd.running, kill: () => etcd.kill() });
  }

  /**
   * kill -9 each of `stopped` at once, runs `whileDown` (after forceDelayMs) if given, and after `downMs`
   * starts them again in the order given, 300 ms apart.
   */
  private async killAndRestart(record: FaultRecord, stopped: MemberName[], downMs: number, whileDown?: () => Promise<void>): Promise<void> {
    const { shard } = record.fault;
    const running = stopped.filter((m) => this.members.isRunning(shard, m));
    if (running.length === 0) return this.skip(record, `${stopped.join(', ')} not running`);
    await Promise.all(running.map((m) => this.kill(shard, m, record)));
    const downUntil = this.now() + downMs;
    if (whileDown) {
      await sleep(Math.min(forceDelayMs, downMs));
      await whileDown();
    }
    await sleep(downUntil - this.now());
    const starts: Promise<void>[] = [];
    for (const m of running) {
      starts.push(this.start(shard, m, record.steps));
      await sleep(300);
    }
    await Promise.all(starts);
  }

  private async kill(shard: string, m: MemberName, record: FaultRecord): Promise<void> {
    this.down.add(`${shard}-${m}`);
    const address = this.members.address(shard, m);
    // It may have exited by itself since isRunning() said otherwise: then it is a crash, already down.
    const output = this.members.exitedByItself(shard, m);
    if (output !== undefined) {
      this.crashes.push({ atMs: this.now(), member: address, output, restart: [] });
      this.step(record, 'found exited', address);
      return;
    }
    await this.members.kill(shard, m);
    this.step(record, 'kill -9', address);
  }

  /** Starts a member, trying again once; a member that cannot start stays down until startAll(). */
  private async start(shard: string, m: MemberName, steps: FaultStep[]): Promise<void> {
    this.down.add(`${shard}-${m}`);
    const started = await this.startTrying(steps, 'start', this.members.address(shard, m), {
      run: () => this.members.start(shard, m),
      running: () => this.members.isRunning(shard, m),
      kill: () => this.members.kill(shard, m),
    });
    if (started) this.down.delete(`${shard}-${m}`);
  }

  /**
   * Starts a process, trying again once; records `action` (and `action failed`, with the error) at
   * `address`, and kills what a failed start left running. Resolves whether it started.
   */
  private async startTrying(
    steps: FaultStep[],
    action: string,
    address: string,
    proc: { run(): Promise<void>; running(): boolean; kill(): Promise<void> },
  ): Promise<boolean> {
    for (let attempt = 1; attempt <= startAttemptsMax; attempt++) {
      try {
        await proc.run();
        this.step(steps, action, address);
        return true;
      } catch (err) {
        this.step(steps, `${action} failed`, address, (err as Error).message.slice(-1_000));
        if (proc.running()) await proc.kill();
      }
    }
    return false;
  }

  private async failover(record: FaultRecord, force: boolean): Promise<void> {
    const outcome: CommandOutcome = await this.members.command(['failover', '--shard', record.fault.shard, '-o', 'json', ...(force ? ['--force'] : [])]);
    const said = (outcome.code === 0 ? outcome.stdout : outcome.stderr).trim();
    this.step(record, force ? 'failover --force' : 'failover', undefined, `exit ${outcome.code}: ${said}`);
  }

  private async dataDirLoss(record: FaultRecord, m: MemberName, downMs: number): Promise<void> {
    const { shard } = record.fault;
    // The other member must hold a complete copy: a steady shard has one primary and an in-sync replica.
    if (!record.steadyBefore) return this.skip(record, 'the shard was not steady: its other copy may be incomplete');
    if (!this.members.isRunning(shard, m) || !this.members.isRunning(shard, other(m))) return this.skip(record, 'a member is not running');
    await this.kill(shard, m, record);
    this.harvestRollbacks(shard, m);
    this.members.deleteDataDir(shard, m);
    const address = this.members.address(shard, m);
    this.dataDirLosses.push({ member: address, atMs: this.now() });
    this.step(record, 'delete data dir', address, this.members.dataPath(shard, m));
    await sleep(downMs);
    await this.start(shard, m, record.steps);
  }

  private async partition(record: FaultRecord, m: MemberName, downMs: number): Promise<void> {
    if (this.network === undefined) return this.skip(record, 'no network namespaces on this machine');
    const address = this.members.address(record.fault.shard, m);
    const wasPrimary = record.fault.target === 'primary';
    await this.network.cut(address);
    this.step(record, 'link down', address);
    const healAt = this.now() + downMs;
    if (wasPrimary) {
      await sleep(Math.min(forceDelayMs, downMs));
      await this.failover(record, true);
    }
    await sleep(healAt - this.now());
    await this.network.heal(address);
    this.step(record, 'link up', address);
  }
}

/** How many times each action was applied across the run: the proof that the faults happened. */
export function actionCounts(records: readonly FaultRecord[], extra: readonly FaultStep[] = []): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const step of [...records.flatMap((r) => r.steps), ...extra]) {
    const key = step.action.startsWith('failover') ? `${step.action} exit ${/^exit (\d+|null)/.exec(step.detail ?? '')?.[1] ?? '?'}` : step.action;
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}
