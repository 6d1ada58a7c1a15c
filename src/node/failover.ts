// Operator-driven failover (`kvshard failover`, `./launch.sh failover`): the command asks the member to
// promote, and that member runs the whole exchange, so the steps of one failover live in one process.
//
// Switchover (both members up), as Redis Cluster's CLUSTER FAILOVER does it:
//   1. the member asks its primary to pause writes (POST /internal/failover/pause); the primary answers,
//      once every write it admitted is durable, with its dataset and last sequence. The pause ends by
//      itself after failoverPauseMs, so a command that dies leaves no shard stuck;
//   2. the member waits until it has applied that sequence (at most failoverCatchUpMs), or resumes the
//      primary and refuses: nothing changed;
//   3. it becomes primary at epoch + 1 (node.ts: persist, then one role transition) and tells every node
//      it reaches; the old primary learns the epoch, stops taking writes at once and becomes its replica.
// No acknowledged write is lost: every write acknowledged before the pause is in the sequence waited for.
//
// Forced (--force, the primary unreachable): steps 1 and 2 are skipped; a member that never completed a
// full copy refuses, and so does a member whose primary still answers it. Writes the old primary acknowledged past the point the member had applied are
// written to the old primary's rollback file when it rejoins (replication/rollback.ts).

import type { ServerResponse } from 'node:http';
import express, { type Router } from 'express';
import type { ShardConfig } from '../core/config.js';
import { sleep } from '../core/backoff.js';
import { BadRequestError, FailoverRefusedError } from '../core/errors.js';
import { sendJson, type BodyRequest } from '../core/http-reply.js';
import { failoverCatchUpMs, failoverPauseMs, failoverRequestTimeoutMs } from '../core/limits.js';
import type { ClusterView } from '../cluster/cluster-view.js';
import type { EpochKind, ShardEpoch } from '../cluster/epochs.js';
import { InternalClient } from '../peer/internal-client.js';
import type { Store } from '../storage/store.js';
import type { Log } from '../core/log.js';

export const failoverPath = '/internal/failover';
export const pausePath = '/internal/failover/pause';
export const resumePath = '/internal/failover/resume';

/** How often a switchover looks whether the replica has applied the primary's last write. */
const catchUpPollMs = 5;

/** What the failover endpoints need of the node (node.ts implements it). */
export interface FailoverHost {
  readonly shard: ShardConfig;
  readonly address: string;
  readonly token: string;
  readonly log: Log;
  readonly view: ClusterView;
  readonly store: Store;
  /** Until when this primary's writes wait for a switchover (see roles.ts, writeRefusal). */
  readonly pause: { until: number };
  /** The role this node serves now. */
  role(): string;
  /** Makes this member its shard's primary at the next epoch; resolves once it serves as primary. */
  promote(kind: Exclude<EpochKind, 'initial'>): Promise<ShardEpoch>;
  /** Tells every node of the layout this node's epochs once; resolves with how many answered, of how many. */
  broadcast(): Promise<{ reached: number; peers: number }>;
}

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
}

function bodyOf(req: BodyRequest): Record<string, unknown> {
  const body = req.body as unknown;
  if (body === undefined || body === null) return {};
  if (typeof body !== 'object' || Array.isArray(body)) throw new BadRequestError('expected a JSON object');
  return body as Record<string, unknown>;
}

export interface FailoverEndpoints {
  readonly router: Router;
  /** Ends a failover's requests under way and frees their sockets, at shutdown. */
  close(): void;
}

export function failoverRouter(host: FailoverHost): FailoverEndpoints {
  const router = express.Router();
  const json = express.json({ limit: 4096 });
  const abort = new AbortController();
  const http = new InternalClient({ token: host.token, timeoutMs: failoverRequestTimeoutMs, replyBytesMax: 64 * 1024, socketsMax: 2, signal: abort.signal });
  let busy = false;

  /** At the primary: hold writes for a switchover, and say where the history stands once all admitted writes are durable. */
  router.post(pausePath, json, async (req: BodyRequest, res: ServerResponse) => {
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
        {
          epoch: epoch.epoch,
          primary: epoch.primary,
        },
      );
    }
    host.pause.until = Date.now() + failoverPauseMs;
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
  });

  router.post(resumePath, json, (_req: BodyRequest, res: ServerResponse) => {
    const was = host.pause.until > Date.now();
    host.pause.until = 0;
    if (was) host.log.info(`writes to ${host.shard.name} resume: the switchover was called off`);
    sendJson(res, 200, { resumed: was });
  });

  /** At the member to promote: the whole failover (see the top of this file). */
  router.post(failoverPath, json, async (req: BodyRequest, res: ServerResponse) => {
    const force = bodyOf(req)['force'] === true;
    if (busy) throw new FailoverRefusedError(host.shard.name, `a failover is already under way at ${host.address}`);
    busy = true;
    try {
      sendJson(res, 200, await failover(host, http, force));
    } finally {
      busy = false;
    }
  });
  return {
    router,
    close() {
      abort.abort();
      http.close();
    },
  };
}

async function failover(host: FailoverHost, http: InternalClient, force: boolean): Promise<FailoverReply> {
  const { shard, view, store } = host;
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
  const next = await host.promote(force ? 'forced' : 'switchover');
  const promotedAt = Date.now();
  const told = await host.broadcast();
  host.log.info(
    `${shard.name}: this member is primary at epoch ${next.epoch} (${next.kind}, from ${before.primary} at epoch ${before.epoch}, ` +
      `applied seq ${applied}${pausedAt === null ? '' : `, writes paused ${promotedAt - pausedAt} ms`}); told ${told.reached} of ${told.peers} nodes`,
  );
  return {
    shard: shard.name,
    primary: next.primary,
    epoch: next.epoch,
    kind: force ? 'forced' : 'switchover',
    previous_primary: before.primary,
    previous_epoch: before.epoch,
    applied_seq: applied,
    writes_paused_ms: pausedAt === null ? null : promotedAt - pausedAt,
    nodes_told: told.reached,
    nodes: told.peers,
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
