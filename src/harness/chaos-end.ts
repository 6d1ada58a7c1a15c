// The end of a chaos run: once the faults have stopped, every member is started, the shards settle, each
// writer's keys are read from their shard's primary, `kvshard verify` compares replicas with primaries,
// and the rollback files are read. From these and the operations it builds the history checkHistory
// takes.

import type { DataDirLoss, History, WriteOp } from './history-check.js';
import type { ChaosMembers, MemberName } from './chaos-members.js';
import type { FaultRunner } from './chaos-faults.js';
import { answerCharsMax, httpGet, jsonOf, sleep } from './chaos-http.js';
import type { WriteRecord } from './chaos-workload.js';

/** How long each shard may take to settle after the faults: a resync of a member with a lost data dir included. */
const settleMsMax = 90_000;
/** How long replicas may take to equal their primaries once settled: the last writes' replication. */
const verifyMsMax = 30_000;
const verifyPauseMs = 2_000;
/** Attempts at one final read that fails without an answer or with a 5xx. */
const readAttemptsMax = 5;
const readTimeoutMs = 5_000;

export interface FinalRead {
  readonly key: string;
  readonly shard: string;
  readonly member: string | undefined;
  readonly status?: number;
  readonly value?: string;
  readonly error?: string;
}

export interface FinalState {
  /** Per shard: whether it settled (one primary, its replica in sync) within settleMsMax. */
  readonly settled: Record<string, boolean>;
  readonly reads: FinalRead[];
  readonly unreadable: number;
  readonly verify: { readonly code: number | null; readonly output: string; readonly attempts: number };
  readonly replicasEqual: Record<string, boolean>;
}

/** Reads one key from `member` until it answers 200 or 404, a few times at most. */
async function finalRead(key: string, shard: string, member: string | undefined): Promise<FinalRead> {
  if (member === undefined) return { key, shard, member, error: 'no member serves as primary' };
  let last: FinalRead = { key, shard, member, error: 'not read' };
  for (let attempt = 0; attempt < readAttemptsMax; attempt++) {
    const result = await httpGet(`http://${member}/get?key=${encodeURIComponent(key)}`, readTimeoutMs);
    if (result.kind === 'answer' && (result.status === 200 || result.status === 404)) {
      return result.status === 200 ? { key, shard, member, status: 200, value: result.body } : { key, shard, member, status: 404 };
    }
    const error = result.kind === 'answer' ? `${result.status} ${result.body.slice(0, answerCharsMax)}` : `${result.kind}: ${result.error}`;
    last = { key, shard, member, error };
    await sleep(500);
  }
  return last;
}

/** The member of `shard` that serves as primary, or undefined when neither says so. */
async function primaryNow(members: ChaosMembers, shard: string): Promise<string | undefined> {
  const [a, b] = await Promise.all([members.state(shard, 'a'), members.state(shard, 'b')]);
  const primaries: { m: MemberName; epoch: number }[] = [];
  if (a?.role === 'primary') primaries.push({ m: 'a', epoch: a.epoch ?? 0 });
  if (b?.role === 'primary') primaries.push({ m: 'b', epoch: b.epoch ?? 0 });
  primaries.sort((x, y) => y.epoch - x.epoch);
  return primaries[0] === undefined ? undefined : members.address(shard, primaries[0].m);
}

/** `kvshard verify`, again until every shard is equal or verifyMsMax has passed. */
async function verifyReplicas(members: ChaosMembers): Promise<Pick<FinalState, 'verify' | 'replicasEqual'>> {
  const deadline = Date.now() + verifyMsMax;
  for (let attempts = 1; ; attempts++) {
    const outcome = await members.command(['verify', '-o', 'json']);
    const shards = (jsonOf(outcome.stdout)['shards'] as { shard?: string; equal?: boolean | null }[] | undefined) ?? [];
    const replicasEqual = Object.fromEntries(members.shards.map((s) => [s.name, shards.find((v) => v.shard === s.name)?.equal === true]));
    const output = `${outcome.stdout}${outcome.stderr}`.trim();
    if (outcome.code === 0 || Date.now() > deadline) return { verify: { code: outcome.code, output, attempts }, replicasEqual };
    await sleep(verifyPauseMs);
  }
}

/** Starts every member, lets the shards settle, and reads the final state of `keysByShard`. */
export async function finalState(members: ChaosMembers, runner: FaultRunner, keysByShard: ReadonlyMap<string, readonly string[]>): Promise<FinalState> {
  await runner.startAll();
  const settledList = await Promise.all(members.shards.map((s) => runner.waitSteady(s.name, settleMsMax)));
  const settled = Object.fromEntries(members.shards.map((s, i) => [s.name, settledList[i]!]));
  const verified = await verifyReplicas(members);
  const reads: FinalRead[] = [];
  for (const s of members.shards) {
    const primary = await primaryNow(members, s.name);
    for (const key of keysByShard.get(s.name) ?? []) reads.push(await finalRead(key, s.name, primary));
  }
  for (const s of members.shards) for (const m of ['a', 'b'] as const) runner.harvestRollbacks(s.name, m);
  return { settled, reads, unreadable: reads.filter((r) => r.error !== undefined).length, ...verified };
}

/** The history checkHistory takes, from the run's writes, its faults and its final state. */
export function buildHistory(writes: readonly WriteRecord[], runner: FaultRunner, final: FinalState): History {
  const ops: WriteOp[] = writes.map((w) => ({
    key: w.key,
    value: w.value,
    ack: w.ack,
    invokedMs: w.invokedMs,
    completedMs: w.completedMs,
    outcome: w.outcome,
    shard: w.shard,
    member: w.member,
    ...(w.epoch === undefined ? {} : { epoch: w.epoch }),
  }));
  const rolledBack = [...runner.rollbacks.values()].flatMap((f) =>
    f.writes.filter((e) => e.op === 'set' && e.value !== undefined).map((e) => ({ key: e.key, value: e.value! })),
  );
  const losses: DataDirLoss[] = runner.dataDirLosses;
  return {
    writes: ops,
    finalValues: new Map(final.reads.map((r) => [r.key, r.value])),
    rolledBack,
    dataDirLosses: losses,
    replicasEqual: new Map(Object.entries(final.replicasEqual)),
  };
}
