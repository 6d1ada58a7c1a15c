// The checker of a fault run's history (issue 27's chaos test): every operation the writers made, with
// the epoch and member that acknowledged it, the faults applied, the rollback files and the final reads.
// It takes everything as arguments and does no I/O, so hand-made histories test it (history-check.test.ts)
// and the same history always gives the same verdict. The properties:
//
//   replica-acked-readable  every write acknowledged with ack=replica is readable at the end;
//   primary-acked-kept      every write acknowledged with ack=primary is readable or in a rollback file,
//                           except those lost with a deleted data dir (counted apart: the documented
//                           cost of ack=primary);
//   one-writer-per-epoch    no shard has two members that acknowledged writes in the same epoch;
//   no-stale-epoch          no member acknowledged a write in an epoch older than one a write was already
//                           acknowledged in, elsewhere in the shard, before this write began;
//   replicas-equal          each shard's replica equals its primary once the faults stop.
//
// Each writer owns its keys and writes them one at a time, so a key's writes are ordered: the value a
// final read may show is that of its last acknowledged write, or of a later write whose outcome is
// unknown (it may have landed).

/** One write as the writer saw it: invoked, then acknowledged, refused, or of unknown outcome. */
export interface WriteOp {
  readonly key: string;
  readonly value: string;
  readonly ack: 'primary' | 'replica';
  /** Milliseconds since the run started. */
  readonly invokedMs: number;
  readonly completedMs: number;
  /** ok: acknowledged; failed: refused, so not applied; unknown: a timeout or a lost connection. */
  readonly outcome: 'ok' | 'failed' | 'unknown';
  /** For an acknowledged write: the shard, the member (address) and the epoch that acknowledged it. */
  readonly shard?: string;
  readonly member?: string;
  readonly epoch?: number;
}

/** A member's data dir deleted at `atMs`: what it alone had acknowledged with ack=primary may be gone. */
export interface DataDirLoss {
  readonly member: string;
  readonly atMs: number;
}

export interface History {
  readonly writes: readonly WriteOp[];
  /** The value each key holds at the end, read from its shard's primary; absent keys are undefined. */
  readonly finalValues: ReadonlyMap<string, string | undefined>;
  /** Every write found in a rollback file, as key and value. */
  readonly rolledBack: readonly { readonly key: string; readonly value: string }[];
  readonly dataDirLosses: readonly DataDirLoss[];
  /** Per shard, whether its replica equals its primary after the faults stopped (kvshard verify). */
  readonly replicasEqual: ReadonlyMap<string, boolean>;
}

export type PropertyName = 'replica-acked-readable' | 'primary-acked-kept' | 'one-writer-per-epoch' | 'no-stale-epoch' | 'replicas-equal';

export interface PropertyResult {
  readonly property: PropertyName;
  /** How many cases the property was checked on. */
  readonly checked: number;
  /** The cases that break it, described (the first few are enough to find the rest in the history). */
  readonly violations: readonly string[];
  /** Cases excused by the property's own rule (acknowledged writes lost with a deleted data dir). */
  readonly excused: number;
}

/** Violations kept per property: more say nothing new and would bloat the report. */
const violationsKept = 20;

function result(property: PropertyName, checked: number, violations: string[], excused = 0): PropertyResult {
  return { property, checked, violations: violations.slice(0, violationsKept), excused };
}

/**
 * Per key, the latest invocation among the writes that may have put its final value there (acknowledged
 * or of unknown outcome, with the final value): one sweep over the history.
 */
function finalValueInvocations(history: History): Map<string, number> {
  const latest = new Map<string, number>();
  for (const w of history.writes) {
    if (w.outcome === 'failed' || w.value !== history.finalValues.get(w.key)) continue;
    latest.set(w.key, Math.max(latest.get(w.key) ?? Number.NEGATIVE_INFINITY, w.invokedMs));
  }
  return latest;
}

/**
 * Whether an acknowledged write survives in the final value of its key: the final value is its own, or
 * that of a write to the key begun after it completed (which then replaced it legitimately).
 * `finalWriteInvokedMs` is the latest invocation of a write that may have left the final value.
 */
function survives(write: WriteOp, finalValue: string | undefined, finalWriteInvokedMs: number | undefined): boolean {
  if (finalValue === write.value) return true;
  return finalWriteInvokedMs !== undefined && finalWriteInvokedMs >= write.completedMs;
}

function acknowledgedKept(history: History): [PropertyResult, PropertyResult] {
  const finalInvoked = finalValueInvocations(history);
  const rolled = new Set(history.rolledBack.map((r) => `${r.key}\u0000${r.value}`));
  const replicaLost: string[] = [];
  const primaryLost: string[] = [];
  let replicaChecked = 0;
  let primaryChecked = 0;
  let excused = 0;
  for (const w of history.writes) {
    if (w.outcome !== 'ok') continue;
    const kept = survives(w, history.finalValues.get(w.key), finalInvoked.get(w.key));
    const what = `${w.key}=${w.value} (ack=${w.ack} by ${w.member ?? '?'} at epoch ${w.epoch ?? '?'}, ${w.completedMs} ms): final ${history.finalValues.get(w.key) ?? 'absent'}`;
    if (w.ack === 'replica') {
      replicaChecked++;
      if (!kept) replicaLost.push(what);
      continue;
    }
    primaryChecked++;
    if (kept || rolled.has(`${w.key}\u0000${w.value}`)) continue;
    const lostWithDir = history.dataDirLosses.some((loss) => loss.member === w.member && loss.atMs >= w.completedMs);
    if (lostWithDir) excused++;
    else primaryLost.push(`${what}, not in a rollback file`);
  }
  return [result('replica-acked-readable', replicaChecked, replicaLost), result('primary-acked-kept', primaryChecked, primaryLost, excused)];
}

function epochsChecked(history: History): [PropertyResult, PropertyResult] {
  const acked = history.writes.filter((w) => w.outcome === 'ok' && w.shard !== undefined && w.epoch !== undefined && w.member !== undefined);
  // One writer per epoch: the members each (shard, epoch) acknowledged writes from.
  const writers = new Map<string, Set<string>>();
  for (const w of acked) {
    const id = `${w.shard} epoch ${w.epoch}`;
    const members = writers.get(id) ?? new Set<string>();
    members.add(w.member!);
    writers.set(id, members);
  }
  const twoWriters = [...writers].filter(([, members]) => members.size > 1).map(([id, members]) => `${id}: acknowledged by ${[...members].join(' and ')}`);
  // No stale epoch: a write acknowledged at epoch E that began after another member of its shard had
  // already acknowledged a write at a higher epoch.
  const stale: string[] = [];
  const byShard = new Map<string, WriteOp[]>();
  for (const w of acked) {
    const list = byShard.get(w.shard!);
    if (list) list.push(w);
    else byShard.set(w.shard!, [w]);
  }
  for (const writes of byShard.values()) stale.push(...staleWrites(writes));
  return [result('one-writer-per-epoch', writers.size, twoWriters), result('no-stale-epoch', acked.length, stale)];
}

/**
 * The writes of one shard acknowledged at an epoch below one another member had already acknowledged a
 * write at before they began. One sweep in time order, keeping the highest epoch acknowledged so far by
 * one member and the highest by any other member, so that a long history is checked in n log n.
 */
function staleWrites(writes: readonly WriteOp[]): string[] {
  const byCompletion = [...writes].sort((a, b) => a.completedMs - b.completedMs);
  const byInvocation = [...writes].sort((a, b) => a.invokedMs - b.invokedMs);
  let best: WriteOp | undefined;
  let bestOther: WriteOp | undefined;
  let done = 0;
  const stale: string[] = [];
  for (const w of byInvocation) {
    for (; done < byCompletion.length && byCompletion[done]!.completedMs < w.invokedMs; done++) {
      const c = byCompletion[done]!;
      if (best === undefined || c.epoch! > best.epoch!) {
        if (best !== undefined && best.member !== c.member) bestOther = best;
        best = c;
      } else if (c.member !== best.member && (bestOther === undefined || c.epoch! > bestOther.epoch!)) {
        bestOther = c;
      }
    }
    const newer = best?.member !== w.member ? best : bestOther;
    if (newer !== undefined && newer.epoch! > w.epoch!) {
      stale.push(
        `${w.key}=${w.value} acknowledged by ${w.member} at epoch ${w.epoch} (${w.invokedMs}-${w.completedMs} ms) after ${newer.member} acknowledged at epoch ${newer.epoch} (${newer.completedMs} ms)`,
      );
    }
  }
  return stale;
}

/** Checks every property of `history`; one result per property, in the order of the list above. */
export function checkHistory(history: History): PropertyResult[] {
  const [replicaAcked, primaryAcked] = acknowledgedKept(history);
  const [oneWriter, noStale] = epochsChecked(history);
  const unequal = [...history.replicasEqual].filter(([, equal]) => !equal).map(([shard]) => `${shard}: replica differs from primary`);
  return [replicaAcked, primaryAcked, oneWriter, noStale, result('replicas-equal', history.replicasEqual.size, unequal)];
}

/** One line per property, with its counts, as the chaos run prints them. */
export function propertyLine(r: PropertyResult): string {
  const verdict = r.violations.length === 0 ? 'ok' : `VIOLATED (${r.violations.length}${r.violations.length === violationsKept ? '+' : ''})`;
  const excused = r.excused > 0 ? `, ${r.excused} lost with a deleted data dir` : '';
  return `${r.property}: ${verdict}, ${r.checked} checked${excused}`;
}
