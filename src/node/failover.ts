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
import { randomUUID } from 'node:crypto';
import express, { type Router } from 'express';
import { sleep } from '../core/backoff.js';
import { BadRequestError, FailoverRefusedError, WritesPausedError } from '../core/errors.js';
import { sendJson, type BodyRequest } from '../core/http-reply.js';
import { failoverPauseMs, failoverRequestTimeoutMs } from '../core/limits.js';
import type { GrantDecision, GrantRequest } from '../cluster/grants.js';
import { askOutcome, decodeGrantRequest, type FailoverHost, grantHere, grantPath, outcomePath, outcomeRetryMs, settleAfterPause } from './promotion.js';

export type { FailoverHost } from './promotion.js';
export { grantPath, outcomePath } from './promotion.js';
export { failoverPath, pausePath, resumePath, type FailoverReply, type PauseReply } from './failover-steps.js';
import { failover, failoverPath, pausePath, resumePath, type PauseReply } from './failover-steps.js';
import { InternalClient } from '../peer/internal-client.js';

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
  /** Once the pause at `epoch` runs out, asks whether the other member was promoted (member-role.ts's askOutcome). */
  settleAfterPause(epoch: number): void;
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
  router.post(resumePath, json, (req: BodyRequest, res: ServerResponse) => service.resume(req, res));
  router.post(failoverPath, json, (req: BodyRequest, res: ServerResponse) => service.failover(req, res));
  return {
    router,
    settleGrant: () => void service.settleGrant(),
    settleAfterPause: (epoch) => service.settleAfterPause(epoch),
    close: () => service.close(),
  };
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
  /** The pause this primary answered last (see PauseReply.pause_id). */
  private pauseId: string | undefined;
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
      grants: host.store.failover.grants(),
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
    // A member that does not know its epochs yet (a new or emptied data dir, not yet confirmed) cannot
    // say it was not promoted: it may have been, before it lost its data.
    if (!host.view.quorum.epochsKnown || !host.view.quorum.epochsConfirmed) {
      throw new WritesPausedError(
        'epoch_unconfirmed',
        host.shard.name,
        `${host.address} has not confirmed its epochs yet, so it cannot say whether it was promoted`,
      );
    }
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
    const member = host.member;
    if (member === undefined || host.role() !== 'primary' || epoch.primary !== host.address) {
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
    // Writes commit in the order they were admitted, so once the pause's record is durable, every write
    // admitted before the pause is too, and the log's last sequence covers each one acknowledged. The
    // record also makes a primary restarted before the outcome ask for it before taking writes.
    await member.dispatch({ type: 'paused', epoch: epoch.epoch, until: performance.now() + failoverPauseMs });
    const log = host.store.log;
    const state = member.state;
    const recorded = host.store.failover.switchoverPause<{ epoch: number }>()?.epoch === epoch.epoch;
    if (!log || !recorded || state.role !== 'primary' || state.epoch !== epoch.epoch || !state.unsettled) {
      throw new FailoverRefusedError(host.shard.name, `${host.address} stopped being primary at epoch ${epoch.epoch} during the pause`);
    }
    this.pauseId = randomUUID();
    const reply: PauseReply = {
      dataset_id: host.store.dataset.datasetId(),
      last_seq: log.lastSeq(),
      epoch: epoch.epoch,
      until: new Date(Date.now() + failoverPauseMs).toISOString(),
      pause_id: this.pauseId,
    };
    host.log.info(`writes to ${host.shard.name} paused for a switchover (at most ${failoverPauseMs} ms): last seq ${reply.last_seq}`);
    sendJson(res, 200, reply);
  }

  async resume(req: BodyRequest, res: ServerResponse): Promise<void> {
    const { host } = this;
    const member = host.member;
    if (bodyOf(req)['pause_id'] !== this.pauseId || this.pauseId === undefined || member === undefined) {
      sendJson(res, 200, { resumed: false, reason: 'not the pause under way' });
      return;
    }
    this.pauseId = undefined;
    const was = member.state.pauseUntil > performance.now() || member.state.unsettled;
    await member.dispatch({ type: 'resumed' });
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
        const member = host.member;
        if (host.role() !== 'primary' || member === undefined) return;
        if (member.state.pauseUntil <= performance.now() && !member.state.unsettled) {
          const answer = await askOutcome(host, this.http, pending.primary, pending.epoch - 1);
          if (answer === 'not_promoted') host.view.quorum.grantResolved(pending.epoch);
        }
        if (host.view.quorum.unresolvedGrant !== undefined) await sleep(outcomeRetryMs, this.abort.signal).catch(() => undefined);
      }
    } finally {
      this.asking = false;
    }
  }

  /** Starts asking, once the pause at `epoch` runs out, whether the other member was promoted; one loop at a time. */
  settleAfterPause(epoch: number): void {
    if (this.settling) return;
    this.settling = true;
    void settleAfterPause(this.host, this.http, epoch, this.abort.signal).finally(() => {
      this.settling = false;
    });
  }

  close(): void {
    this.abort.abort();
    this.http.close();
  }
}
