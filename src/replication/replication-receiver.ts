// The replica's side of replication: the internal endpoints its primary calls. Only nodes holding the
// cluster secret reach them (http-api.ts checks the token before routing here), and of those the replica
// takes data only from the primary its own sharding.toml names.
//
// Besides receiving batches and resyncs, a replica tells a starting primary what it holds and lets it
// copy that data (a snapshot in chunks): a primary whose data dir is new rebuilds itself from its replica
// instead of wiping it (see primary-recovery.ts). For the same reason a replica refuses a resync that
// would replace a dataset holding data with a shorter history, or with one written at a lower epoch.
//
// Every request names the sender's epoch for the shard and every answer names the replica's: a request
// from a lower epoch than the replica knows is refused (stale_epoch, naming the newer epoch and its
// primary), and a higher one is learned as the request names it.

import { failpoint } from '../core/failpoints.js';
import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import express, { type Router } from 'express';
import { canonicalAddress, configName } from '../core/config.js';
import { parseQuery, splitUrl } from '../core/data-request.js';
import { KvError } from '../core/errors.js';
import { sendJson, type BodyRequest } from '../core/http-reply.js';
import { internalBodyBytesMax, resyncChunkBytesMax, resyncChunkEntriesMax, snapshotIdleMs } from '../core/limits.js';
import {
  decodeReplicate,
  decodeResync,
  decodeSnapshotRequest,
  encodeMessage,
  replicaStatePath,
  replicatePath,
  resyncPath,
  snapshotPath,
  type ReplicaReply,
  type ReplicaStateReply,
  type ResyncMessage,
  type SnapshotAnswer,
  type SnapshotReply,
  type SnapshotRequest,
} from './replication-protocol.js';
import type { ClusterView } from '../cluster/cluster-view.js';
import type { ShardEpoch } from '../cluster/epochs.js';
import { writeRollback } from './rollback.js';
import { isComplete } from '../storage/dataset-store.js';
import type { Snapshot } from '../storage/snapshot.js';
import type { DemotedAt } from '../storage/failover-store.js';
import type { Store } from '../storage/store.js';
import type { Log } from '../core/log.js';

type ResyncBegin = Extract<ResyncMessage, { phase: 'begin' }>;

export interface ReplicaProgress {
  primarySeq: number;
  lastContactAt: number;
  /** Commit time on the primary of the newest applied entry. */
  lastAppliedTs: number;
  resyncs: number;
  /** The last resync this replica refused, and why (null when none). */
  resyncRefused: { readonly at: string; readonly reason: string } | null;
}

export interface ReplicaRouterOptions {
  readonly store: Store;
  readonly progress: ReplicaProgress;
  readonly view: ClusterView;
  /** The address of this shard's primary in this replica's config: the only sender it takes data from. */
  readonly primaryAddress: string;
  /** This replica's shard name, for its epoch. */
  readonly shard: string;
  readonly log: Log;
}

/** Answers a batch or resync step (409 on refusal), with the replica's epoch for the shard. */
function answer(res: ServerResponse, reply: ReplicaReply, epoch: ShardEpoch): void {
  sendJson(res, reply.error ? 409 : 200, { ...reply, epoch });
}

function sendMsgpack(res: ServerResponse, reply: SnapshotReply): void {
  const body = encodeMessage(reply);
  res.writeHead(200, { 'content-type': 'application/msgpack', 'content-length': body.length });
  res.end(body);
}

export interface ReplicaEndpoints {
  readonly router: Router;
  /** Ends an open snapshot (its LMDB read transaction) before the store closes. */
  close(): void;
}

/** What the replica's routes share. */
interface ReceiverContext {
  readonly store: Store;
  readonly progress: ReplicaProgress;
  readonly log: Log;
  /** A refusal for a sender other than this shard's primary in this replica's config. */
  readonly notMyPrimary: (sender: string) => ReplicaReply | undefined;
  readonly shard: string;
}

/**
 * Where a demoted primary's history and the resync's dataset part, as far as it is known: up to there
 * they are one history, past it this member's writes are its own. The new primary branched off this
 * member's dataset (a failover): at its branch point. Otherwise the histories forked in some other way
 * (this member served a dataset of its own, say, after the new primary's epoch began), and the branch of
 * the higher epoch wins: from a higher epoch than the data here was written at, the common point is
 * where both branched off one dataset, or, with none known, before everything this member's log holds.
 * Undefined when this member's data is not to be rolled back (the shorter-history guard then decides).
 */
function branchPoint(store: Store, demoted: DemotedAt, message: ResyncBegin): number | undefined {
  const fork = message.forkedFrom;
  if (fork && fork.datasetId === demoted.datasetId) return fork.seq;
  if (message.epoch.epoch <= store.dataset.datasetEpoch()) return undefined;
  const own = store.dataset.forkedFrom();
  return fork && own && fork.datasetId === own.datasetId ? Math.min(fork.seq, own.seq) : 0;
}

/**
 * A demoted primary that wrote past the point its successor branched off (a forced failover) writes
 * those writes to a rollback file before the resync replaces its data (see rollback.ts). Returns
 * undefined when the resync may go on: the writes are safe in the file, or there were none.
 */
async function rollBackOwnWrites(ctx: ReceiverContext, message: ResyncBegin): Promise<ReplicaReply | undefined> {
  const demoted = ctx.store.failover.demotedAt();
  const branchSeq = demoted && branchPoint(ctx.store, demoted, message);
  if (!demoted || branchSeq === undefined) return refuseShorterHistory(ctx.store, message);
  if (demoted.rollback !== undefined || demoted.seq <= branchSeq) return undefined;
  const { file, entries } = await writeRollback(ctx.store, ctx.shard, demoted, branchSeq, message.primary);
  await ctx.store.failover.markRolledBack(file);
  ctx.log.error(
    `this member wrote ${entries} writes as primary (seq ${branchSeq + 1} to ${demoted.seq}, at epoch ${ctx.store.dataset.datasetEpoch()}) that the new primary ` +
      `${message.primary} (epoch ${message.epoch.epoch}) never received: they are in ${file}; resyncing from the new primary`,
  );
  return undefined;
}

/** One step of a full resync from the primary (begin, chunk, end), and the replica's answer to it. */
async function resyncStep(ctx: ReceiverContext, message: ResyncMessage): Promise<ReplicaReply> {
  const { store, progress, log, notMyPrimary } = ctx;
  switch (message.phase) {
    case 'begin': {
      const refusal = notMyPrimary(message.primary) ?? (await rollBackOwnWrites(ctx, message));
      if (refusal) {
        if (refusal.error === 'resync_refused' && progress.resyncRefused?.reason !== refusal.reason) {
          log.error(`refusing a full resync from ${message.primary}: ${refusal.reason}`);
        }
        if (refusal.error === 'resync_refused') progress.resyncRefused = { at: new Date().toISOString(), reason: refusal.reason! };
        return refusal;
      }
      progress.resyncRefused = null;
      log.info(
        `full resync ${message.resyncId} from the primary started (${message.keyCount} keys at seq ${message.snapshotSeq}` +
          `${message.force ? ', which the primary was started to force' : ''}); reads go to the primary until it ends`,
      );
      await store.dataset.beginResync(message.resyncId);
      return { appliedSeq: 0 };
    }
    case 'chunk': {
      const ok = await store.dataset.applyResyncChunk(message.resyncId, message.pairs);
      return ok ? { appliedSeq: 0 } : { appliedSeq: 0, error: 'resync_aborted' };
    }
    case 'end': {
      const ok = await store.dataset.endResync(message.resyncId, message.datasetId, message.snapshotSeq, message.keyCount, message.epoch.epoch);
      if (ok) {
        progress.resyncs++;
        progress.primarySeq = Math.max(progress.primarySeq, message.snapshotSeq);
        log.info(`full resync ${message.resyncId} done: ${message.keyCount} keys at seq ${message.snapshotSeq}`);
      }
      return ok ? { appliedSeq: message.snapshotSeq } : { appliedSeq: 0, error: 'resync_aborted' };
    }
  }
}

export function replicaRouter(options: ReplicaRouterOptions): ReplicaEndpoints {
  const { store, progress, view, log } = options;
  const router = express.Router();
  const raw = express.raw({ type: () => true, limit: internalBodyBytesMax });
  const expected = canonicalAddress(options.primaryAddress);
  const untrusted = new Set<string>();
  /** A refusal for a sender other than this shard's primary in this replica's config (logged once each). */
  const notMyPrimary = (sender: string): ReplicaReply | undefined => {
    if (canonicalAddress(sender) === expected) return undefined;
    const reason = `this replica's ${configName(view.config)} names its primary ${options.primaryAddress}, not ${sender}`;
    if (!untrusted.has(sender)) {
      untrusted.add(sender);
      log.warn(`refusing replication from ${sender}: ${reason}`);
    }
    return { appliedSeq: store.dataset.replicaState().appliedSeq, error: 'not_my_primary', reason };
  };
  const snapshots = new SnapshotSessions(store);

  const known = () => view.epochOf(options.shard);

  router.post(replicatePath, raw, async (req: BodyRequest, res: ServerResponse) => {
    const message = decodeReplicate(req.body as Buffer);
    const refusal = notMyPrimary(message.primary) ?? staleEpoch(options, message.primary, message.epoch);
    if (refusal) return answer(res, refusal, known());
    // "Keys may be moving in" counts at once. "No more" counts only once this replica holds every entry
    // the primary had when it said so: the keys that moved in are in those entries, and a batch may stop
    // short of them (a lagging replica, or a first message from the log's end).
    await notePrimaryLayout(store, view, message.layoutId, message.migrating ? true : undefined);
    // A test makes a replica slow to apply, so that it falls behind its primary (coordinator-failover.test.ts).
    if (message.entries.length > 0) await failpoint('replica-apply');
    const outcome = await store.dataset.applyReplicated(message.datasetId, message.entries, message.forkedFrom, message.epoch.epoch);
    if (!message.migrating && outcome.ok && outcome.appliedSeq >= message.primarySeq) await notePrimaryMigrating(store, view, message.layoutId, false);
    progress.primarySeq = message.primarySeq;
    progress.lastContactAt = Date.now();
    if (outcome.ok && message.entries.length > 0 && outcome.appliedSeq >= message.entries.at(-1)!.seq) {
      progress.lastAppliedTs = message.entries.at(-1)!.ts;
    }
    answer(res, outcome.ok ? { appliedSeq: outcome.appliedSeq } : { appliedSeq: outcome.appliedSeq, error: outcome.reason }, known());
  });

  router.post(resyncPath, raw, async (req: BodyRequest, res: ServerResponse) => {
    const message = decodeResync(req.body as Buffer);
    const refusal = notMyPrimary(message.epoch.primary) ?? staleEpoch(options, message.epoch.primary, message.epoch);
    if (refusal) return answer(res, refusal, known());
    progress.lastContactAt = Date.now();
    answer(res, await resyncStep({ store, progress, log, notMyPrimary, shard: options.shard }, message), known());
  });

  router.get(replicaStatePath, (req: BodyRequest, res: ServerResponse) => {
    const refusal = notMyPrimary(parseQuery(splitUrl(req.url ?? '').query).get('primary') ?? '(none given)');
    if (refusal) return sendJson(res, 409, refusal);
    const state = store.dataset.replicaState();
    const reply: ReplicaStateReply = {
      datasetId: state.datasetId ?? null,
      appliedSeq: state.appliedSeq,
      keys: store.count(),
      complete: isComplete(state),
      datasetEpoch: store.dataset.datasetEpoch(),
    };
    sendJson(res, 200, reply);
  });

  router.post(snapshotPath, raw, (req: BodyRequest, res: ServerResponse) => {
    const request = decodeSnapshotRequest(req.body as Buffer);
    // Only this shard's primary may copy the data, or end a copy under way by starting another.
    const refusal = notMyPrimary(request.primary) ?? staleEpoch(options, request.primary, request.epoch);
    if (refusal) return sendJson(res, 409, { ...refusal, epoch: known() });
    sendMsgpack(res, { ...snapshotStep(snapshots, request, log), epoch: known() });
  });

  return { router, close: () => snapshots.close() };
}

/** One step of a primary's copy of this replica's data (begin, chunk, end), and the replica's answer to it. */
function snapshotStep(snapshots: SnapshotSessions, request: SnapshotRequest, log: Log): SnapshotAnswer {
  switch (request.phase) {
    case 'begin': {
      const { id, snapshot } = snapshots.begin();
      log.info(`a primary copies this replica's data: ${snapshot.keyCount} keys at seq ${snapshot.seq}`);
      return {
        phase: 'begin',
        snapshotId: id,
        datasetId: snapshot.datasetId ?? null,
        seq: snapshot.seq,
        keyCount: snapshot.keyCount,
        complete: snapshot.complete,
      };
    }
    case 'chunk':
      return { phase: 'chunk', pairs: snapshots.chunk(request.snapshotId, request.after) };
    case 'end':
      snapshots.end(request.snapshotId);
      return { phase: 'end' };
  }
}

/**
 * A sender whose epoch for this shard is lower than the one this replica knows was deposed: its request
 * is refused, and the answer names the newer epoch and its primary. A higher epoch is learned as the
 * request names it (its primary, kind and time; the node checks the primary is a member of the shard).
 * The request is taken only from the primary of the epoch the replica knows then: one that names
 * another member as its primary, or an epoch this node did not take, is refused too.
 */
function staleEpoch(options: ReplicaRouterOptions, sender: string, theirs: ShardEpoch): ReplicaReply | undefined {
  const { view, store, shard } = options;
  if (theirs.epoch > view.epochOf(shard).epoch) view.learnEpochs({ [shard]: theirs }, `the primary ${sender}`);
  const known = view.epochOf(shard);
  if (known.epoch === theirs.epoch && canonicalAddress(known.primary) === canonicalAddress(sender)) return undefined;
  return {
    appliedSeq: store.dataset.replicaState().appliedSeq,
    error: 'stale_epoch',
    reason: `${sender} sends at epoch ${theirs.epoch} (primary ${theirs.primary}); ${shard} is at epoch ${known.epoch}, primary ${known.primary}`,
  };
}

/**
 * A resync replaces the replica's data. When the replica holds a complete dataset with keys, the resync
 * must not lose any of its history:
 * - from the same dataset, the primary's snapshot must reach at least the replica's sequence (a lower
 *   one means the primary's data dir went back to an older copy);
 * - from a dataset that branched off the replica's (a primary that served without confirming its
 *   position), the replica must not be past the branch point: past it, it holds writes the primary lacks;
 * - from an unrelated dataset, the snapshot's sequence must reach the replica's.
 * A primary started to overwrite its replica (--overwrite-replica) is taken whatever it holds.
 */
function refuseShorterHistory(store: Store, message: ResyncBegin): ReplicaReply | undefined {
  const state = store.dataset.replicaState();
  if (message.force || !isComplete(state)) return undefined;
  const keys = store.count();
  if (keys === 0) return undefined;
  const mine = `seq ${state.appliedSeq} (${keys} keys)`;
  let why: string | undefined;
  if (message.datasetId === state.datasetId) {
    if (message.snapshotSeq < state.appliedSeq)
      why = `the primary's copy of this dataset reaches seq ${message.snapshotSeq} (${message.keyCount} keys), this replica's ${mine}`;
  } else if (message.forkedFrom !== null && message.forkedFrom.datasetId === state.datasetId) {
    const fork = message.forkedFrom;
    if (state.appliedSeq > fork.seq)
      why = `the primary's dataset branched off this replica's at seq ${fork.seq}, and this replica holds writes up to ${mine} that the primary lacks`;
  } else if (message.epoch.epoch < store.dataset.datasetEpoch()) {
    why = `the primary's dataset (another one) is of epoch ${message.epoch.epoch}, and this replica's ${mine} was written at epoch ${store.dataset.datasetEpoch()}`;
  } else if (message.snapshotSeq < state.appliedSeq) {
    why = `the primary's dataset reaches seq ${message.snapshotSeq} (${message.keyCount} keys), this replica's (another dataset) ${mine}`;
  }
  if (why === undefined) return undefined;
  return {
    appliedSeq: state.appliedSeq,
    error: 'resync_refused',
    reason:
      `${why}: a resync would lose writes. To keep this replica's data, move the primary's data dir away and restart it ` +
      "(it rebuilds from this replica); to keep the primary's, restart it with --overwrite-replica",
  };
}

/**
 * The snapshot a primary is copying from this replica: at most one at a time (a new one ends the
 * old), and one left idle for snapshotIdleMs is ended, so a primary that died mid-copy does not pin
 * an LMDB read transaction (and with it old pages) for ever.
 */
class SnapshotSessions {
  private current: { id: string; snapshot: Snapshot; timer: NodeJS.Timeout } | undefined;

  constructor(private readonly store: Store) {}

  begin(): { id: string; snapshot: Snapshot } {
    this.close();
    const id = randomUUID();
    const snapshot = this.store.snapshot();
    this.current = { id, snapshot, timer: this.expiry() };
    return { id, snapshot };
  }

  chunk(id: string, after: Buffer | null): [Buffer, Buffer][] {
    const session = this.session(id);
    clearTimeout(session.timer);
    session.timer = this.expiry();
    return session.snapshot.chunk(after ?? undefined, resyncChunkEntriesMax, resyncChunkBytesMax).pairs;
  }

  end(id: string): void {
    this.session(id);
    this.close();
  }

  close(): void {
    if (!this.current) return;
    clearTimeout(this.current.timer);
    this.current.snapshot.done();
    this.current = undefined;
  }

  private session(id: string): NonNullable<SnapshotSessions['current']> {
    if (this.current?.id !== id) throw new SnapshotGoneError();
    return this.current;
  }

  private expiry(): NodeJS.Timeout {
    const timer = setTimeout(() => this.close(), snapshotIdleMs);
    timer.unref();
    return timer;
  }
}

/** A chunk of a snapshot that has ended (expired, or replaced by a newer one): the primary starts over. */
class SnapshotGoneError extends KvError {
  constructor() {
    super('snapshot_gone', 409, 'no such snapshot: it ended or expired; start again');
  }
}

/**
 * A replica serves reads only while its primary runs the same layout: otherwise the primary may be
 * moving keys this replica's config still routes here. Whether the primary has keys moving in decides
 * whether a local miss is final; it is kept in LMDB with the layout it was heard under, so a replica
 * restarted while its primary is down still answers a miss with 404, unless it was restarted with
 * another layout, under which its primary has said nothing yet.
 */
async function notePrimaryLayout(store: Store, view: ClusterView, layoutId: string, migrating: boolean | undefined): Promise<void> {
  if (migrating !== undefined) await notePrimaryMigrating(store, view, layoutId, migrating);
  view.primaryRuns(layoutId);
}

async function notePrimaryMigrating(store: Store, view: ClusterView, layoutId: string, migrating: boolean): Promise<void> {
  view.setPrimaryMigrating(migrating);
  await store.dataset.notePrimaryMigrating(layoutId, migrating);
}
