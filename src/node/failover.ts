// Operator-driven failover (`kvshard failover`, `./launch.sh failover`): the command asks the member to
// promote, and that member runs the whole exchange, so the steps of one failover live in one process.
//
// Switchover (both members up), as Redis Cluster's CLUSTER FAILOVER does it:
//   1. the member asks its primary to pause writes (POST /internal/failover/pause); the primary answers,
//      once every write it admitted is durable, with its dataset and last sequence. When the pause ends
//      without word of the outcome, the primary asks the member whether it was promoted (and so calls
//      off a promotion still under way), and takes no writes until it knows;
//   2. the member waits until it has applied that sequence (at most failoverCatchUpMs), or resumes the
//      primary and refuses: nothing changed;
//   3. it asks every node to grant it the next epoch (cluster/grants.ts) and goes on only once a
//      majority has stored the grant; else it resumes the primary and refuses;
//   4. it becomes primary at that epoch (node.ts: persist, then one role transition) and tells every node
//      it reaches; the old primary learns the epoch, stops taking writes at once and becomes its replica.
// No acknowledged write is lost: every write acknowledged before the pause is in the sequence waited for.
//
// Forced (--force, the primary unreachable): steps 1 and 2 are skipped; a member that never completed a
// full copy refuses, and so does a member whose primary still answers it. Nodes grant only once they
// have not heard from the primary for node_timeout_ms, by which time a primary cut off from the
// majority has stopped acknowledging writes (after half of it). Writes the old primary acknowledged past
// the point the member had applied go to the old primary's rollback file when it rejoins
// (replication/rollback.ts). `without_majority` promotes on whatever grants it gets: the one way to
// fail over a cluster with no majority left (one shard of two nodes), at the risk of two primaries.

import type { ServerResponse } from 'node:http';
import express, { type Router } from 'express';
import { canonicalAddress } from '../core/config.js';
import { sleep } from '../core/backoff.js';
import { failpoint } from '../core/failpoints.js';
import { BadRequestError, FailoverRefusedError } from '../core/errors.js';
import { sendJson, type BodyRequest } from '../core/http-reply.js';
import { failoverCatchUpMs, failoverPauseMs, failoverRequestTimeoutMs } from '../core/limits.js';
import type { ShardEpoch } from '../cluster/epochs.js';
import type { GrantDecision, GrantRequest } from '../cluster/grants.js';
import { describeCount } from '../cluster/quorum.js';
import {
  askOutcome,
  collectGrants,
  decodeGrantRequest,
  type FailoverHost,
  type FailoverOptions,
  grantHere,
  grantPath,
  outcomePath,
  outcomeRetryMs,
  settleAfterPause,
} from './promotion.js';

export type { FailoverHost } from './promotion.js';
export { grantPath, outcomePath } from './promotion.js';
import { InternalClient } from '../peer/internal-client.js';

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

function bodyOf(req: BodyRequest): Record<string, unknown> {
  const body = req.body as unknown;
  if (body === undefined || body === null) return {};
  if (typeof body !== 'object' || Array.isArray(body)) throw new BadRequestError('expected a JSON object');
  return body as Record<string, unknown>;
}

export interface FailoverEndpoints {
  readonly router: Router;
  /** A peer holds a grant above this node's epoch for its shard: find out whether it was used (ClusterView.whenGrantSeen). */
  settleGrant(): void;
  /** Ends a failover's requests under way and frees their sockets, at shutdown. */
  close(): void;
}

export function failoverRouter(host: FailoverHost): FailoverEndpoints {
  const router = express.Router();
  const json = express.json({ limit: 4096 });
  const service = new FailoverService(host);
  router.post(grantPath, json, (req: BodyRequest, res: ServerResponse) => service.grant(req, res));
  router.post(outcomePath, json, (req: BodyRequest, res: ServerResponse) => service.outcome(req, res));
  router.post(pausePath, json, (req: BodyRequest, res: ServerResponse) => service.pause(req, res));
  router.post(resumePath, json, (_req: BodyRequest, res: ServerResponse) => service.resume(res));
  router.post(failoverPath, json, (req: BodyRequest, res: ServerResponse) => service.failover(req, res));
  return { router, settleGrant: () => void service.settleGrant(), close: () => service.close() };
}

/** The failover endpoints' state: one failover at a time, grant decisions in order, one outcome question at a time. */
class FailoverService {
  private readonly abort = new AbortController();
  private readonly http: InternalClient;
  private busy = false;
  /** The failover under way here, if any: the old primary may call it off (outcome) until it is promoted. */
  private attempt: { cancelled: boolean } | undefined;
  /** Grant decisions, one at a time: each reads the stored grant that the one before may have just written. */
  private grantChain: Promise<unknown> = Promise.resolve();
  private settling = false;
  private asking = false;

  constructor(private readonly host: FailoverHost) {
    this.http = new InternalClient({
      token: host.token,
      timeoutMs: failoverRequestTimeoutMs,
      replyBytesMax: 64 * 1024,
      socketsMax: 2,
      signal: this.abort.signal,
    });
  }

  private readonly grantSerially = (req: GrantRequest): Promise<GrantDecision> => {
    const next = this.grantChain.then(() => grantHere(this.host, req));
    this.grantChain = next.catch(() => undefined);
    return next;
  };

  /** At every node: store a promotion grant, synced, or say why not (cluster/grants.ts). */
  async grant(req: BodyRequest, res: ServerResponse): Promise<void> {
    const { host } = this;
    const decision = await this.grantSerially(decodeGrantRequest(bodyOf(req), host));
    sendJson(res, 200, {
      node: host.address,
      granted: decision.grant,
      ...(decision.grant ? {} : { code: decision.code, reason: decision.reason }),
      epochs: host.view.epochs(),
      grants: host.store.grants(),
    });
  }

  /**
   * At the member a switchover or a grant names: whether it was promoted above `epoch`. When it was not,
   * the failover under way here (if any) is called off first, so the answer stays true.
   */
  outcome(req: BodyRequest, res: ServerResponse): void {
    const { host } = this;
    const asked = bodyOf(req)['epoch'];
    if (!Number.isSafeInteger(asked) || (asked as number) < 0) throw new BadRequestError('epoch must be the integer epoch the caller knows');
    const known = host.view.epochOf(host.shard.name);
    const promoted = known.epoch > (asked as number);
    if (!promoted && this.attempt) {
      this.attempt.cancelled = true;
      host.log.warn(`${host.shard.name}: asked whether this member was promoted above epoch ${asked as number}: calling off its failover`);
    }
    sendJson(res, 200, { promoted, epoch: known.epoch, primary: known.primary, epochs: host.view.epochs() });
  }

  /** At the primary: hold writes for a switchover, and say where the history stands once all admitted writes are durable. */
  async pause(req: BodyRequest, res: ServerResponse): Promise<void> {
    const { host } = this;
    const asked = bodyOf(req)['epoch'];
    if (!Number.isSafeInteger(asked) || (asked as number) < 1) throw new BadRequestError('epoch must be the positive integer epoch the caller knows');
    const epoch = host.view.epochOf(host.shard.name);
    if (host.role() !== 'primary' || epoch.primary !== host.address) {
      throw new FailoverRefusedError(host.shard.name, `${host.address} is not its primary; ${epoch.primary} is (epoch ${epoch.epoch})`);
    }
    // A switchover asked at another epoch than this primary's is based on a view of the shard that is
    // not this one's: pausing for it could hand the shard to a member that knows another history.
    if (asked !== epoch.epoch) {
      throw new FailoverRefusedError(
        host.shard.name,
        `the switchover was asked at epoch ${asked as number}, and ${host.address} is primary at epoch ${epoch.epoch}`,
        { epoch: epoch.epoch, primary: epoch.primary },
      );
    }
    host.pause.until = Date.now() + failoverPauseMs;
    host.pause.unsettled = true;
    if (!this.settling) {
      this.settling = true;
      void settleAfterPause(host, this.http, epoch.epoch, this.abort.signal).finally(() => {
        this.settling = false;
      });
    }
    // Writes commit in the order they were admitted, so once this empty commit is durable, every write
    // admitted before the pause is too, and the log's last sequence covers each one acknowledged.
    await host.store.barrier();
    const log = host.store.log;
    if (!log) throw new FailoverRefusedError(host.shard.name, `${host.address} stopped being primary during the pause`);
    const reply: PauseReply = {
      dataset_id: host.store.datasetId(),
      last_seq: log.lastSeq(),
      epoch: epoch.epoch,
      until: new Date(host.pause.until).toISOString(),
    };
    host.log.info(`writes to ${host.shard.name} paused for a switchover (at most ${failoverPauseMs} ms): last seq ${reply.last_seq}`);
    sendJson(res, 200, reply);
  }

  resume(res: ServerResponse): void {
    const { host } = this;
    const was = host.pause.until > Date.now() || host.pause.unsettled;
    host.pause.until = 0;
    host.pause.unsettled = false;
    if (was) host.log.info(`writes to ${host.shard.name} resume: the switchover was called off`);
    sendJson(res, 200, { resumed: was });
  }

  /** At the member to promote: the whole failover (see the top of this file). */
  async failover(req: BodyRequest, res: ServerResponse): Promise<void> {
    const body = bodyOf(req);
    const force = body['force'] === true;
    const withoutMajority = body['without_majority'] === true;
    if (this.busy) throw new FailoverRefusedError(this.host.shard.name, `a failover is already under way at ${this.host.address}`);
    this.busy = true;
    const attempt = { cancelled: false };
    this.attempt = attempt;
    try {
      sendJson(res, 200, await failover(this.host, this.http, { force, withoutMajority, attempt, grant: this.grantSerially }));
    } finally {
      this.busy = false;
      this.attempt = undefined;
    }
  }

  /** A grant above this node's epoch was seen: asks its member whether it was promoted, one question at a time. */
  async settleGrant(): Promise<void> {
    if (this.asking) return;
    this.asking = true;
    try {
      const { host } = this;
      for (let pending = host.view.quorum.unresolvedGrant; pending !== undefined && !this.abort.signal.aborted; pending = host.view.quorum.unresolvedGrant) {
        // Only a primary's writes wait for the answer, and asking calls off a failover under way at the
        // member: a replica, or a primary in a switchover's pause (which asks itself once it ends), does not ask.
        if (host.role() !== 'primary') return;
        if (host.pause.until <= Date.now() && !host.pause.unsettled) {
          const answer = await askOutcome(host, this.http, pending.primary, pending.epoch - 1);
          if (answer === 'not_promoted') host.view.quorum.grantResolved(pending.epoch);
        }
        if (host.view.quorum.unresolvedGrant !== undefined) await sleep(outcomeRetryMs, this.abort.signal).catch(() => undefined);
      }
    } finally {
      this.asking = false;
    }
  }

  close(): void {
    this.abort.abort();
    this.http.close();
  }
}

async function failover(host: FailoverHost, http: InternalClient, options: FailoverOptions): Promise<FailoverReply> {
  const { shard, view, store } = host;
  const { force } = options;
  const before = view.epochOf(shard.name);
  if (host.role() === 'primary' || before.primary === host.address) {
    throw new FailoverRefusedError(shard.name, `${host.address} is its primary already (epoch ${before.epoch})`, {
      primary: before.primary,
      epoch: before.epoch,
    });
  }
  if (host.role() !== 'replica') throw new FailoverRefusedError(shard.name, `${host.address} serves as ${host.role()}`);
  if (!store.replicaComplete()) {
    throw new FailoverRefusedError(
      shard.name,
      `${host.address} never completed a full copy of the primary's data (its first resync has not ended): it cannot take over`,
    );
  }
  // What the peers know now (a migration under way included), before the primary's writes pause; for
  // --force, at the same time, whether the primary still answers (a silent one costs a request timeout).
  await Promise.all([host.broadcast(), force ? refuseIfAnswering(host, http, before) : undefined]);
  let pausedAt: number | null = null;
  if (!force) pausedAt = await catchUp(host, http, before);
  const applied = store.replicaState().appliedSeq;
  const kind = force ? 'forced' : 'switchover';
  await failpoint('failover-before-grants');
  const votes = await collectGrants(host, http, kind, options).catch(async (err: unknown) => {
    if (!force) await http.post(before.primary, resumePath, {}).catch(() => undefined);
    throw err;
  });
  const count = describeCount(votes.granted, view.voterSets());
  if (!votes.majority && !options.withoutMajority) {
    if (!force) await http.post(before.primary, resumePath, {}).catch(() => undefined);
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

/** Steps 1 and 2 of a switchover: pause the primary, apply up to its last write. Returns when the pause began. */
async function catchUp(host: FailoverHost, http: InternalClient, before: ShardEpoch): Promise<number> {
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
    const state = store.replicaState();
    return state.datasetId === pause.dataset_id && state.appliedSeq >= pause.last_seq;
  };
  while (!caughtUp() && Date.now() < deadline) await sleep(catchUpPollMs);
  if (!caughtUp()) {
    await http.post(before.primary, resumePath, {}).catch(() => undefined);
    const state = store.replicaState();
    throw new FailoverRefusedError(
      shard.name,
      `${host.address} did not apply the primary's last write (seq ${pause.last_seq}) within ${failoverCatchUpMs} ms ` +
        `(it is at seq ${state.appliedSeq}); the primary takes writes again`,
      { primary_seq: pause.last_seq, applied_seq: state.appliedSeq },
    );
  }
  return pausedAt;
}
