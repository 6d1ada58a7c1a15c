// How a primary starts without losing what its replica holds.
//
// A primary whose data dir is new (moved away, wiped, a new disk) would otherwise start an empty
// dataset and push it to its replica as a full resync, wiping the shard's data on both nodes (Redis
// documents the same trap for masters without persistence). So before a primary serves its shard's keys
// and pushes anything, it asks its replica what it holds (planRecovery, in recovery-plan.ts, decides
// from the answer):
// - the replica follows a dataset (or holds a partial copy): the primary copies the replica's data, a
//   resync in the other direction, and continues the replica's dataset at its sequence, so the replica
//   goes on streaming with nothing lost;
// - the replica holds nothing: a new shard, the primary starts an empty dataset;
// - the replica does not answer: the primary does not guess. It answers its shard's writes with 503
//   primary_recovering until the replica answers, unless started with --overwrite-replica (a
//   deliberate fresh start or restore, whose data then replaces the replica's).
// A primary with data of its own asks too, for a few seconds. When the replica has a longer history of
// the same dataset, or of another one, it keeps a copy of its own data under <data dir>/replaced/ and
// rebuilds from the replica. When the replica does not answer, it serves its own data under a new
// dataset id branched off the old one at its last sequence: its data may be behind the replica's (an
// older copy, a lost unsynced tail), and its new writes must never be taken for the replica's writes of
// the same sequences. A replica not past the branch point follows the new dataset without a resync; one
// past it refuses the primary's resync and keeps its data (see replication-receiver.ts).
//
// When the two histories have forked, the branch of the higher epoch wins (see recovery-plan.ts), and
// the other branch's writes since the fork go to a rollback file (here, for this primary's; in the
// replica, when it takes this primary's resync), never only into a copy of a data dir.

import { Backoff } from '../core/backoff.js';
import { readdirSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import {
  internalBodyBytesMax,
  internalReplyBytesMax,
  peerConnectTimeoutMs,
  peerProbeTimeoutMs,
  recoveryBackoffFirstMs,
  recoveryBackoffMaxMs,
  recoveryConfirmWaitMs,
  recoverySocketsMax,
  recoveryWaitLogEveryMs,
  replacedCopiesMax,
  replicationRequestTimeoutMs,
} from '../core/limits.js';
import { describeError } from '../core/errors.js';
import { tokenHeader } from '../core/wire.js';
import { PeerPool } from '../peer/peer-pool.js';
import {
  decodeReplicaState,
  decodeSnapshotReply,
  encodeMessage,
  replicaStatePath,
  snapshotPath,
  decodeShardEpoch,
  type OnEpochSeen,
  type ReplicaStateReply,
  type SnapshotReply,
  type SnapshotRequest,
  type SnapshotStep,
} from './replication-protocol.js';
import { planRecovery, type PrimaryFacts } from './recovery-plan.js';
import { writeRollback } from './rollback.js';
import type { ShardEpoch } from '../cluster/epochs.js';
import type { Store } from '../storage/store.js';
import type { Log } from '../core/log.js';

export type RecoveryState = 'asking_replica' | 'waiting_for_replica' | 'rebuilding' | 'ready';

export interface RecoveryOptions {
  readonly store: Store;
  /** This primary's shard, and its epoch for it as this node knows it now, sent with every snapshot request. */
  readonly shard: string;
  readonly epoch: () => ShardEpoch;
  /** The replica named a higher epoch for the shard than this primary's: this node has been deposed. */
  readonly onEpochSeen?: OnEpochSeen;
  /** This primary's address, which the replica checks against its own config. */
  readonly primaryAddress: string;
  readonly replicaAddress: string;
  readonly token: string;
  /** Started with --overwrite-replica: serve this data dir's data at once and make the replica take it. */
  readonly overwriteReplica: boolean;
  /**
   * A replica promoted just now, at run time: its data is the shard's (up to the branch point its old
   * primary follows from), so it serves at once and never copies the old primary's data.
   */
  readonly promoted?: boolean;
  readonly log: Log;
}

export class PrimaryRecovery {
  private state: RecoveryState;
  private detail = '';
  private keysCopied = 0;
  private readonly startedAt = Date.now();
  /** For the question what the replica holds: a short bound, since a primary with data waits for it. */
  private readonly askPool: PeerPool;
  /** For copying the replica's data: chunks of up to 4 MiB get the replication bound. */
  private readonly pool: PeerPool;
  private readonly headers: Record<string, string>;
  private readonly abort = new AbortController();
  private task: Promise<void> | undefined;
  private markReady!: () => void;
  /** Resolves once the primary serves its shard's keys (never when closed first). */
  readonly ready: Promise<void>;

  constructor(private readonly options: RecoveryOptions) {
    this.state = options.store.dataset.isNewPrimary() && !options.overwriteReplica ? 'waiting_for_replica' : 'asking_replica';
    this.ready = new Promise((resolve) => (this.markReady = resolve));
    this.askPool = new PeerPool(options.replicaAddress, {
      connections: recoverySocketsMax,
      timeoutMs: peerProbeTimeoutMs,
      connectTimeoutMs: peerConnectTimeoutMs,
      replyBytesMax: internalReplyBytesMax,
    });
    this.pool = new PeerPool(options.replicaAddress, {
      connections: recoverySocketsMax,
      timeoutMs: replicationRequestTimeoutMs,
      connectTimeoutMs: peerConnectTimeoutMs,
      replyBytesMax: internalBodyBytesMax,
    });
    this.headers = { [tokenHeader]: options.token, 'content-type': 'application/msgpack' };
  }

  /**
   * While the primary does not serve its shard's keys: what it is doing, and whether its own data may
   * answer reads meanwhile (a primary with data of its own checking with its replica). Undefined once
   * it serves.
   */
  blocking(): { readonly state: RecoveryState; readonly readsLocal: boolean } | undefined {
    if (this.state === 'ready') return undefined;
    return { state: this.state, readsLocal: this.state === 'asking_replica' };
  }

  status(): Record<string, unknown> {
    return {
      state: this.state,
      detail: this.detail || null,
      keys_copied: this.keysCopied,
      started_at: new Date(this.startedAt).toISOString(),
    };
  }

  start(): void {
    if (this.options.promoted) {
      this.state = 'ready';
      this.markReady();
      return;
    }
    this.task ??= this.run().catch((err: unknown) => {
      if (!this.abort.signal.aborted) this.options.log.error(`primary recovery stopped: ${(err as Error).stack ?? String(err)}`);
    });
  }

  async close(): Promise<void> {
    this.abort.abort();
    await this.destroyPools();
    await this.task;
  }

  private async destroyPools(): Promise<void> {
    await Promise.all([this.askPool.destroy(), this.pool.destroy()]).catch(() => undefined);
  }

  private async run(): Promise<void> {
    const { store, log } = this.options;
    if (this.options.overwriteReplica) {
      await store.dataset.startOverwrite();
      log.info(
        `started with --overwrite-replica: serving this data dir's ${store.count()} keys; the replica at ${this.options.replicaAddress} will be made to hold the same`,
      );
      return this.becomeReady();
    }
    if (store.dataset.overwritesReplica()) {
      log.info(
        `the replica at ${this.options.replicaAddress} has not yet taken the data this primary was started to overwrite it with: serving, and going on with that`,
      );
      return this.becomeReady();
    }
    if (!store.dataset.isNewPrimary() && (await this.startWithData())) return;
    await this.waitForReplica();
  }

  /**
   * A primary with data of its own asks its replica, for a bounded time, whether the replica holds more.
   * Resolves true once it serves, false when it has to wait for the replica like a new data dir (a
   * rebuild that had begun was cut off).
   */
  private async startWithData(): Promise<boolean> {
    const { store, log } = this.options;
    const replica = await this.askReplicaWithin(recoveryConfirmWaitMs);
    if (this.abort.signal.aborted) return true;
    if (replica === undefined) {
      // Unconfirmed, this data may be behind the replica's (an older copy, a lost unsynced tail): what is
      // written from here gets a dataset id of its own, never to be taken for the replica's writes.
      const fork = await store.dataset.forkDataset();
      log.info(
        `the replica at ${this.options.replicaAddress} did not answer within ${recoveryConfirmWaitMs} ms: serving this data dir's data as ` +
          `dataset ${store.dataset.datasetId()}, branched off ${fork.datasetId} at seq ${fork.seq}`,
      );
      this.becomeReady();
      return true;
    }
    const plan = planRecovery(this.facts(), replica);
    if (plan.action === 'diverged') log.error(`${plan.why}; serving this data dir's data, and the replica keeps its own (see its /status)`);
    if (plan.action === 'serve' && plan.why) log.warn(`${plan.why}; serving, and the replica's writes since the fork go to its rollback file`);
    if (plan.action !== 'rebuild') {
      this.becomeReady();
      return true;
    }
    try {
      await this.keepCopy();
      if (plan.rollBackPast !== undefined) await this.rollBack(plan.rollBackPast, plan.why);
      await this.rebuild(plan.why, replica.datasetEpoch);
      this.becomeReady();
      return true;
    } catch (err) {
      if (this.abort.signal.aborted) return true;
      // Before the copy began, this data dir still holds its own data: serve it. After, it holds part
      // of the replica's: wait for the replica like a new data dir.
      if (!store.dataset.isNewPrimary()) {
        log.warn(`could not rebuild from the replica (${describeError(err)}); serving this data dir's data`);
        this.becomeReady();
        return true;
      }
      log.warn(`rebuilding from the replica was cut off (${describeError(err)}); starting over once it answers`);
      return false;
    }
  }

  /** A new data dir (or a cut-off rebuild): ask the replica until it answers, then start or rebuild. */
  private async waitForReplica(): Promise<void> {
    const { store, log } = this.options;
    log.info(`this data dir is new: asking the replica at ${this.options.replicaAddress} whether the shard has data before serving`);
    const backoff = new Backoff(recoveryBackoffFirstMs, recoveryBackoffMaxMs, this.abort.signal);
    let loggedAt = 0;
    while (!this.abort.signal.aborted) {
      try {
        const replica = await this.askReplica();
        const plan = planRecovery(this.facts(), replica);
        if (plan.action === 'fresh') {
          await store.dataset.startDataset();
          log.info('the replica holds no data either: a new shard, starting with an empty dataset');
        } else if (plan.action === 'rebuild') {
          await this.rebuild(plan.why, replica.datasetEpoch);
        }
        return this.becomeReady();
      } catch (err) {
        if (this.abort.signal.aborted) return;
        this.state = 'waiting_for_replica';
        this.detail = `the replica at ${this.options.replicaAddress} has not answered: ${describeError(err)}`;
        if (Date.now() - loggedAt >= recoveryWaitLogEveryMs) {
          loggedAt = Date.now();
          log.warn(
            `waiting for the replica before serving (writes get 503 primary_recovering; start with --overwrite-replica to start without it): ${this.detail}`,
          );
        }
        await backoff.wait();
      }
    }
  }

  /** Asks the replica what it holds, retrying (a replica starting beside this primary) until `withinMs`. */
  private async askReplicaWithin(withinMs: number): Promise<ReplicaStateReply | undefined> {
    const deadline = Date.now() + withinMs;
    const backoff = new Backoff(recoveryBackoffFirstMs, recoveryBackoffMaxMs, this.abort.signal);
    while (!this.abort.signal.aborted) {
      try {
        return await this.askReplica();
      } catch (err) {
        this.detail = `the replica at ${this.options.replicaAddress} has not answered: ${describeError(err)}`;
        if (Date.now() + backoff.nextMs >= deadline) return undefined;
        await backoff.wait();
      }
    }
    return undefined;
  }

  /**
   * Before replacing a primary's own data: a copy under <data dir>/replaced/, for a person to inspect.
   * At most replacedCopiesMax are kept per member; the oldest beyond that is removed.
   */
  private async keepCopy(): Promise<void> {
    const { store, log } = this.options;
    const dir = join(dirname(store.path), 'replaced');
    const prefix = `${basename(store.path)}-`;
    const target = join(dir, `${prefix}${new Date().toISOString().replace(/[:.]/g, '-')}`);
    await store.backup(target);
    log.info(`kept a copy of this data dir's ${store.count()} keys in ${target} before rebuilding from the replica`);
    const copies = readdirSync(dir)
      .filter((name) => name.startsWith(prefix))
      .sort();
    for (const old of copies.slice(0, Math.max(0, copies.length - replacedCopiesMax))) {
      rmSync(join(dir, old), { recursive: true, force: true });
      log.info(`removed the oldest kept copy ${join(dir, old)}: at most ${replacedCopiesMax} are kept`);
    }
  }

  private facts(): PrimaryFacts {
    const { store } = this.options;
    const isNew = store.dataset.isNewPrimary();
    return {
      isNew,
      lastSeq: store.log!.lastSeq(),
      datasetId: isNew ? undefined : store.dataset.datasetId(),
      forkedFrom: store.dataset.forkedFrom(),
      datasetEpoch: store.dataset.datasetEpoch(),
    };
  }

  /**
   * Before this primary's history yields to the replica's (of a higher epoch): its writes past
   * `branchSeq` that its log still holds go to a rollback file, as a demoted primary's do.
   */
  private async rollBack(branchSeq: number, why: string): Promise<void> {
    const { store, log } = this.options;
    const own = { datasetId: store.dataset.datasetId(), seq: store.log!.lastSeq() };
    if (own.seq <= branchSeq) return;
    const { file, entries } = await writeRollback(store, this.options.shard, own, branchSeq, this.options.replicaAddress);
    log.error(`${why}: this member's ${entries} writes past seq ${branchSeq} (to ${own.seq}) are in ${file}; rebuilding from the replica`);
  }

  private becomeReady(): void {
    this.state = 'ready';
    this.detail = '';
    void this.destroyPools();
    this.markReady();
  }

  private async askReplica(): Promise<ReplicaStateReply> {
    const path = `${replicaStatePath}?primary=${encodeURIComponent(this.options.primaryAddress)}`;
    const reply = await this.askPool.exchange({ method: 'GET', path, headers: this.headers });
    if (reply.status !== 200) throw new Error(`replica answered ${reply.status}: ${reply.body.toString('utf8', 0, 200)}`);
    return decodeReplicaState(JSON.parse(reply.body.toString('utf8')));
  }

  private async snapshotCall<P extends SnapshotStep['phase']>(request: Extract<SnapshotStep, { phase: P }>): Promise<Extract<SnapshotReply, { phase: P }>> {
    const epoch = this.options.epoch();
    const body = encodeMessage({ ...request, primary: this.options.primaryAddress, epoch } satisfies SnapshotRequest);
    const reply = await this.pool.exchange({ method: 'POST', path: snapshotPath, headers: this.headers, body });
    if (reply.status !== 200) {
      this.noteRefusal(reply.body, epoch);
      throw new Error(`replica answered ${reply.status} to ${request.phase}: ${reply.body.toString('utf8', 0, 200)}`);
    }
    const answer = decodeSnapshotReply(reply.body, request.phase) as Extract<SnapshotReply, { phase: P }>;
    this.noteEpoch(answer.epoch, epoch);
    return answer;
  }

  /** A refusal (stale_epoch, as JSON) that names the replica's epoch: reported when higher than this primary's. */
  private noteRefusal(body: Buffer, mine: ShardEpoch): void {
    try {
      const named = (JSON.parse(body.toString('utf8')) as { epoch?: unknown }).epoch;
      if (named !== undefined) this.noteEpoch(decodeShardEpoch(named), mine);
    } catch {
      // Not JSON, or no epoch of the right shape: nothing to learn.
    }
  }

  private noteEpoch(theirs: ShardEpoch, mine: ShardEpoch): void {
    if (theirs.epoch > mine.epoch) this.options.onEpochSeen?.(this.options.shard, theirs, this.options.replicaAddress);
  }

  /** Copies the replica's data in one consistent snapshot, in chunks, then takes over its position. */
  private async rebuild(why: string, replicaEpoch: number | undefined): Promise<void> {
    const { store, log } = this.options;
    this.state = 'rebuilding';
    this.keysCopied = 0;
    this.detail = why;
    log.info(`rebuilding from the replica at ${this.options.replicaAddress} before serving: ${why}`);
    const begin = await this.snapshotCall({ phase: 'begin' });
    await store.dataset.beginRebuild();
    let after: Buffer | null = null;
    for (;;) {
      if (this.abort.signal.aborted) throw new Error('closing');
      const { pairs }: { pairs: readonly [Buffer, Buffer][] } = await this.snapshotCall({ phase: 'chunk', snapshotId: begin.snapshotId, after });
      if (pairs.length === 0) break;
      await store.dataset.applyRebuildChunk(pairs);
      this.keysCopied += pairs.length;
      after = pairs.at(-1)![0];
    }
    await this.snapshotCall({ phase: 'end', snapshotId: begin.snapshotId });
    // A partial copy (the replica's resync was under way) is not a dataset at a sequence: start a new one,
    // which the replica then takes by a resync of the same keys.
    const datasetId = begin.complete && begin.datasetId !== null ? begin.datasetId : undefined;
    if (!(await store.dataset.endRebuild(datasetId, begin.seq, begin.keyCount, replicaEpoch))) {
      throw new Error(`copied ${this.keysCopied} keys but the replica's snapshot had ${begin.keyCount}`);
    }
    log.info(
      datasetId
        ? `rebuilt from the replica: ${begin.keyCount} keys, continuing dataset ${datasetId} at seq ${begin.seq}; serving`
        : `rebuilt from the replica's partial copy: ${begin.keyCount} keys in a new dataset ${store.dataset.datasetId()}; serving`,
    );
  }
}
