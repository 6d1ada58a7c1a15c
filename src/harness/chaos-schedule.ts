// The fault schedule of a chaos run (chaos.ts): a pure function of the seed, the run's length and the
// fault kinds this machine can apply, so a seed names one schedule. What a fault does to which member is
// decided when it runs (the member that serves as primary then, say), since failovers move the roles;
// the run records that in its history.

/** mulberry32: a small, fast PRNG whose whole state is one 32-bit word, so a seed is easy to quote. */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/**
 * The faults, each a whole episode that ends with every member it stopped running again:
 *
 *   kill             kill -9 one member, restart it after downMs;
 *   switchover       `kvshard failover` (both members up);
 *   force-dead       kill -9 the primary, `kvshard failover --force`, restart the old primary after downMs;
 *   force-live       `kvshard failover --force` while the primary runs (a refusal, exit 5, is expected);
 *   restart-shard    kill -9 both members at once, restart them after downMs, `first` first;
 *   data-dir-loss    kill -9 one member, delete its data dir, restart it after downMs (only while the
 *                    shard's other member runs with a complete copy);
 *   partition        cut one member's host off (link down) for downMs, with a forced failover while a
 *                    cut-off primary is gone (needs root and `ip`: the members then run in namespaces);
 *
 * and, with a coordinator (etcd), faults of etcd itself, which every shard feels at once:
 *
 *   etcd-restart     kill -9 etcd, start it again on its data after downMs;
 *   etcd-wipe        kill -9 etcd, delete its data, start it again empty after downMs;
 *   etcd-partition   cut etcd's host off for downMs (etcd then runs in a namespace of its own).
 */
export type FaultKind =
  | 'kill'
  | 'switchover'
  | 'force-dead'
  | 'force-live'
  | 'restart-shard'
  | 'data-dir-loss'
  | 'partition'
  | 'etcd-restart'
  | 'etcd-wipe'
  | 'etcd-partition';

/** Which member a fault targets: by the role it serves in when the fault runs. */
export type FaultTarget = 'primary' | 'replica';

export interface Fault {
  /** Its place in the schedule, from 0. */
  readonly id: number;
  /** When it is due, in milliseconds since the run started; it waits for the shard's previous fault to end. */
  readonly atMs: number;
  readonly kind: FaultKind;
  readonly shard: string;
  readonly target: FaultTarget;
  /** How long the stopped or cut-off member stays down. */
  readonly downMs: number;
  /** For restart-shard: which role's member starts first. */
  readonly first: FaultTarget;
}

export interface ScheduleOptions {
  readonly seed: number;
  /** Faults are due from the start until this many milliseconds (the writers' run). */
  readonly faultWindowMs: number;
  readonly shards: readonly string[];
  /** Whether the partition fault can run here. */
  readonly partitions: boolean;
  /** Whether the cluster runs with a coordinator, so that etcd's faults apply (default false). */
  readonly coordinator?: boolean;
}

/** Relative weights of the fault kinds: kills and failovers are what find split brains. */
const weights: Readonly<Record<FaultKind, number>> = {
  kill: 4,
  switchover: 3,
  'force-dead': 3,
  'force-live': 1,
  'restart-shard': 2,
  'data-dir-loss': 2,
  partition: 2,
  'etcd-restart': 2,
  'etcd-wipe': 1,
  'etcd-partition': 2,
};

/** Whether a fault kind can run under `options`. */
function applies(kind: FaultKind, options: ScheduleOptions): boolean {
  const coordinator = options.coordinator === true;
  switch (kind) {
    case 'partition':
      return options.partitions;
    case 'etcd-restart':
    case 'etcd-wipe':
      return coordinator;
    case 'etcd-partition':
      return coordinator && options.partitions;
    default:
      return true;
  }
}

/** Gap between two faults' due times, in ms: about one fault every 2 s across the cluster. */
const gapMsMin = 500;
const gapMsMax = 3_500;
/** How long a member stays down or cut off. */
const downMsMin = 500;
const downMsMax = 4_000;
/** No fault is due in the last part of the window, so every episode can end before the writers stop. */
const quietTailMs = 5_000;

function pick<T>(random: () => number, items: readonly T[]): T {
  return items[Math.floor(random() * items.length)]!;
}

function pickKind(random: () => number, kinds: readonly FaultKind[]): FaultKind {
  const total = kinds.reduce((n, k) => n + weights[k], 0);
  let at = random() * total;
  for (const kind of kinds) {
    at -= weights[kind];
    if (at < 0) return kind;
  }
  return kinds.at(-1)!;
}

/** The schedule for `options`: the same options give the same faults, in the same order. */
export function faultSchedule(options: ScheduleOptions): Fault[] {
  const random = mulberry32(options.seed);
  const kinds = (Object.keys(weights) as FaultKind[]).filter((k) => applies(k, options));
  const faults: Fault[] = [];
  for (let atMs = 1_000 + Math.floor(random() * gapMsMax); atMs < options.faultWindowMs - quietTailMs; ) {
    const kind = pickKind(random, kinds);
    faults.push({
      id: faults.length,
      atMs,
      kind,
      shard: pick(random, options.shards),
      target: pick(random, ['primary', 'replica'] as const),
      downMs: downMsMin + Math.floor(random() * (downMsMax - downMsMin)),
      first: pick(random, ['primary', 'replica'] as const),
    });
    atMs += gapMsMin + Math.floor(random() * (gapMsMax - gapMsMin));
  }
  return faults;
}
