// The member's side of one failover (failover.ts has the endpoints): the checks, the switchover's
// pause and catch-up, the grants (promotion.ts), the promotion and the announcement, and the report.

import { canonicalAddress } from '../core/config.js';
import { sleep } from '../core/backoff.js';
import { failpoint } from '../core/failpoints.js';
import { CoordinatorUnavailableError, FailoverRefusedError } from '../core/errors.js';
import { failoverCatchUpMs } from '../core/limits.js';
import type { ShardEpoch } from '../cluster/epochs.js';
import { describeCount } from '../cluster/quorum.js';
import type { InternalClient } from '../peer/internal-client.js';
import { collectGrants, type FailoverHost, type FailoverOptions, type Votes } from './promotion.js';

export const failoverPath = '/internal/failover';
export const pausePath = '/internal/failover/pause';
export const resumePath = '/internal/failover/resume';

/** How often a switchover looks whether the replica has applied the primary's last write. */
const catchUpPollMs = 5;

/** The primary's answer to a pause: where its history stands, every admitted write durable. */
export interface PauseReply {
  readonly dataset_id: string;
  readonly last_seq: number;
  readonly epoch: number;
  readonly until: string;
  /** Names this pause: a resume counts only with it, so a late resume of an earlier attempt is ignored. */
  readonly pause_id: string;
}

export interface FailoverReply {
  readonly shard: string;
  readonly primary: string;
  readonly epoch: number;
  readonly kind: 'switchover' | 'forced';
  readonly previous_primary: string;
  readonly previous_epoch: number;
  /** The sequence this member had applied when it was promoted. */
  readonly applied_seq: number;
  /** How long the shard's writes waited (a switchover), from the pause to the promotion. */
  readonly writes_paused_ms: number | null;
  readonly nodes_told: number;
  readonly nodes: number;
  /** The nodes that did not answer the announcement of the new epoch. */
  readonly nodes_not_told: string[];
  /** Whether the old primary answered it (a switchover whose old primary did not is reported as a failure). */
  readonly old_primary_told: boolean;
  /** The nodes that stored the grant, and of how many (a majority of each voter set is needed). */
  readonly grants: string;
  /** True when promoted without a majority's grants (--without-majority). */
  readonly without_majority: boolean;
}

/**
 * With a coordinator, etcd issues the epoch: the shard's key taken in one transaction stands for a
 * majority's grants. A refusal there changes nothing, as a missing majority does.
 */
async function takeOverInEtcd(host: FailoverHost, kind: 'switchover' | 'forced', before: ShardEpoch): Promise<Votes> {
  // Before the transaction: the member's own key may show up in its key reads before the promotion.
  await host.member?.dispatch({ type: 'takeOverStarted' });
  const taken = await host.coordinator!.takeOver(kind, before.primary, host.view.epochOf(host.shard.name).epoch);
  if ('refused' in taken) throw new FailoverRefusedError(host.shard.name, `etcd did not give ${host.address} the shard: ${taken.refused}`);
  if ('unavailable' in taken) throw new CoordinatorUnavailableError(host.shard.name, taken.unavailable, taken.changed);
  return { epoch: taken.epoch, granted: new Set([host.address]), refusals: new Map(), majority: true };
}

/** Why this member does not start a failover, if it does not: thrown as 409 failover_refused. */
function refuseToStart(host: FailoverHost, before: ShardEpoch): void {
  const { shard, store } = host;
  if (host.role() === 'primary' || before.primary === host.address) {
    throw new FailoverRefusedError(shard.name, `${host.address} is its primary already (epoch ${before.epoch})`, {
      primary: before.primary,
      epoch: before.epoch,
    });
  }
  if (host.role() !== 'replica') throw new FailoverRefusedError(shard.name, `${host.address} serves as ${host.role()}`);
  if (!store.dataset.replicaComplete()) {
    throw new FailoverRefusedError(
      shard.name,
      `${host.address} never completed a full copy of the primary's data (its first resync has not ended): it cannot take over`,
    );
  }
}

export async function failover(host: FailoverHost, http: InternalClient, options: FailoverOptions): Promise<FailoverReply> {
  const member = host.member;
  if (host.coordinator === undefined || member === undefined) return failoverSteps(host, http, options);
  try {
    return await failoverSteps(host, http, options);
  } finally {
    // Promoted, refused or failed: a key of its own at an epoch it did not adopt is now one to give up.
    await member.dispatch({ type: 'takeOverEnded' }).catch(() => undefined);
  }
}

async function failoverSteps(host: FailoverHost, http: InternalClient, options: FailoverOptions): Promise<FailoverReply> {
  const { shard, view, store } = host;
  const { force } = options;
  const before = view.epochOf(shard.name);
  refuseToStart(host, before);
  if (host.coordinator && options.withoutMajority) {
    throw new FailoverRefusedError(shard.name, '--without-majority has no use with a coordinator: etcd, not a majority of nodes, issues epochs');
  }
  // What the peers know now (a migration under way included), before the primary's writes pause; for
  // --force, at the same time, whether the primary still answers (a silent one costs a request timeout).
  await Promise.all([host.broadcast(), force ? refuseIfAnswering(host, http, before) : undefined]);
  const paused = force ? undefined : await catchUp(host, http, before);
  const pausedAt = paused?.at ?? null;
  const resume = () => (paused ? http.post(before.primary, resumePath, { pause_id: paused.id }).catch(() => undefined) : undefined);
  const applied = store.dataset.replicaState().appliedSeq;
  const kind = force ? 'forced' : 'switchover';
  await failpoint('failover-before-grants');
  const votes = await (host.coordinator ? takeOverInEtcd(host, kind, before) : collectGrants(host, http, kind, options)).catch(async (err: unknown) => {
    await resume();
    throw err;
  });
  const count = host.coordinator ? 'etcd' : describeCount(votes.granted, view.voterSets());
  if (!votes.majority && !options.withoutMajority) {
    await resume();
    const why = [...votes.refusals].map(([node, reason]) => `${node}: ${reason}`).join('; ');
    throw new FailoverRefusedError(
      shard.name,
      `only ${count} nodes granted epoch ${votes.epoch} to ${host.address}, no majority: nothing changed (${why})` +
        (view.epochOf(shard.name).epoch > before.epoch
          ? ''
          : '; a cluster that cannot reach a majority without the dead member can fail over only with --without-majority'),
      { epoch: votes.epoch, grants: count },
    );
  }
  if (options.attempt.cancelled || view.epochOf(shard.name).epoch !== before.epoch) {
    throw new FailoverRefusedError(
      shard.name,
      `the old primary ${before.primary} asked for the outcome first, or the epoch moved on: the promotion is called off`,
    );
  }
  const next = await host.promote(kind, votes.epoch);
  const promotedAt = Date.now();
  const told = await host.broadcast();
  const oldPrimaryTold = !told.missed.some((a) => canonicalAddress(a) === canonicalAddress(before.primary));
  host.log.info(
    `${shard.name}: this member is primary at epoch ${next.epoch} (${next.kind}, from ${before.primary} at epoch ${before.epoch}, ` +
      `applied seq ${applied}${pausedAt === null ? '' : `, writes paused ${promotedAt - pausedAt} ms`}, grants ${count}` +
      `${votes.majority ? '' : ' WITHOUT a majority'}); told ${told.reached} of ${told.peers} nodes`,
  );
  return {
    shard: shard.name,
    primary: next.primary,
    epoch: next.epoch,
    kind,
    previous_primary: before.primary,
    previous_epoch: before.epoch,
    applied_seq: applied,
    writes_paused_ms: pausedAt === null ? null : promotedAt - pausedAt,
    nodes_told: told.reached,
    nodes: told.peers,
    nodes_not_told: told.missed,
    old_primary_told: oldPrimaryTold,
    grants: count,
    without_majority: !votes.majority,
  };
}

/**
 * A forced failover is for a primary that is down: one that still answers would go on taking writes
 * beside the promoted member until the new epoch reached it. So it is refused while the primary answers
 * this member at all (any HTTP answer within a failover request's timeout); a switchover loses nothing.
 */
async function refuseIfAnswering(host: FailoverHost, http: InternalClient, before: ShardEpoch): Promise<void> {
  const answer = await http.get<unknown>(before.primary, '/health').catch(() => undefined);
  if (answer === undefined) return;
  throw new FailoverRefusedError(
    host.shard.name,
    `the primary ${before.primary} answers ${host.address} (HTTP ${answer.status}): it is not down, so --force would leave two members ` +
      'taking writes; run the failover without --force (a switchover, which loses nothing)',
    { primary: before.primary, epoch: before.epoch },
  );
}

/** Steps 1 and 2 of a switchover: pause the primary, apply up to its last write. Returns when the pause began, and its id. */
async function catchUp(host: FailoverHost, http: InternalClient, before: ShardEpoch): Promise<{ at: number; id: string }> {
  const { shard, store } = host;
  const pausedAt = Date.now();
  let pause: PauseReply;
  try {
    const reply = await http.post<PauseReply & { message?: string }>(before.primary, pausePath, { epoch: before.epoch });
    if (reply.status !== 200) {
      throw new FailoverRefusedError(shard.name, `the primary ${before.primary} refused to pause: ${reply.data?.message ?? `HTTP ${reply.status}`}`);
    }
    if (!reply.data) throw new FailoverRefusedError(shard.name, `the primary ${before.primary} gave no answer to the pause`);
    pause = reply.data;
  } catch (err) {
    if (err instanceof FailoverRefusedError) throw err;
    throw new FailoverRefusedError(
      shard.name,
      `the primary ${before.primary} is unreachable (${(err as Error).message}); to promote ${host.address} with the data it has, use --force ` +
        "(writes it has not received yet end up in the old primary's rollback file)",
    );
  }
  const deadline = Date.now() + failoverCatchUpMs;
  const caughtUp = () => {
    const state = store.dataset.replicaState();
    return state.datasetId === pause.dataset_id && state.appliedSeq >= pause.last_seq;
  };
  while (!caughtUp() && Date.now() < deadline) await sleep(catchUpPollMs);
  if (!caughtUp()) {
    await http.post(before.primary, resumePath, { pause_id: pause.pause_id }).catch(() => undefined);
    const state = store.dataset.replicaState();
    throw new FailoverRefusedError(
      shard.name,
      `${host.address} did not apply the primary's last write (seq ${pause.last_seq}) within ${failoverCatchUpMs} ms ` +
        `(it is at seq ${state.appliedSeq}); the primary takes writes again`,
      { primary_seq: pause.last_seq, applied_seq: state.appliedSeq },
    );
  }
  return { at: pausedAt, id: pause.pause_id };
}
