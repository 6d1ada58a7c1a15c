// The primary's side of replication: a background task that pushes the replication log to the replica.
//
// The client's write is acknowledged after the primary's own durable commit; this task never holds it
// up (except for ack=replica, which waits here with a bound). While the replica is down or slow the
// task retries with capped exponential backoff; what waits meanwhile is the log on disk, bounded by
// retention bytes, not work in memory. A replica that is behind the retained log, lost its data or
// followed another dataset gets a full resync: a consistent snapshot in bounded chunks, then the log.

import { randomUUID } from 'node:crypto';
import { describeError, ReplicaTimeoutError, ReplicaUnavailableError } from '../core/errors.js';
import {
  internalReplyBytesMax,
  logTrimEntriesMax,
  replicaAckWaitersMax,
  replicationBackoffFirstMs,
  replicationBackoffMaxMs,
  replicationBatchBytesMax,
  replicationBatchEntriesMax,
  replicationClosePollMs,
  replicationHeartbeatMs,
  replicationRequestTimeoutMs,
  replicationSocketsMax,
  resyncChunkBytesMax,
  resyncChunkEntriesMax,
} from '../core/limits.js';
import type { ReplicationLog } from '../storage/replication-log.js';
import { PeerPool } from '../peer/peer-pool.js';
import { Backoff, sleep, Wakeup } from '../core/backoff.js';
import { tokenHeader } from '../core/wire.js';
import { afterFailure, afterReply, nextAction, trimApplied, type SenderFacts, type SenderState } from './sender-next.js';
import {
  parseReplicaReply,
  encodeMessage,
  replicatePath,
  resyncPath,
  type OnEpochSeen,
  type ReplicaReply,
  type ReplicateMessage,
  type ResyncMessage,
  type ResyncStep,
} from './replication-protocol.js';
import type { ShardEpoch } from '../cluster/epochs.js';
import type { Store } from '../storage/store.js';
import type { Log } from '../core/log.js';

export interface SenderOptions {
  readonly store: Store;
  readonly log: ReplicationLog;
  /** This primary's address, which the replica checks against its own config. */
  readonly primaryAddress: string;
  readonly replicaAddress: string;
  readonly token: string;
  readonly logRetentionBytes: number;
  readonly logger: Log;
  /** The layout the primary runs, and whether keys may still be moving to it: told to the replica. */
  readonly layoutId: string;
  readonly migrating: () => boolean;
  /** This primary's shard, and its epoch for it as this node knows it now, sent with every request. */
  readonly shard: string;
  readonly epoch: () => ShardEpoch;
  /** A reply named a higher epoch for the shard than this primary's: this node has been deposed. */
  readonly onEpochSeen?: OnEpochSeen;
}

/** A replica that refused a request in a way that needs the primary to change course. */
class ReplicaRefusal extends Error {
  constructor(readonly reply: ReplicaReply) {
    super(`replica refused: ${reply.error} at ${reply.appliedSeq}`);
  }
}

/**
 * The member answered, but does not serve as replica yet (404: it is still changing roles after a
 * switchover, its old primary role's routes answering; 503: it is starting). Not unreachable: writes
 * waiting for ack=replica go on waiting, and the round is retried.
 */
class ReplicaNotReady extends Error {}

/** How a wait for the replica ended: applied, out of time, or the replica found unable to take it. */
type AckOutcome = { readonly applied: true } | { readonly applied: false; readonly unavailable?: string };

interface AckWaiter {
  readonly seq: number;
  readonly resolve: (outcome: AckOutcome) => void;
  readonly timer: NodeJS.Timeout;
}

export class ReplicationSender {
  /** Keep-alive sockets to the replica. */
  private readonly pool: PeerPool;
  private readonly headers: Record<string, string>;
  private readonly wakeup = new Wakeup();
  private readonly abort = new AbortController();
  private readonly waiters = new Set<AckWaiter>();
  private state: SenderState = 'connecting';
  /** The replica's applied sequence as last reported by it; undefined until it first answers. */
  private ackedSeq: number | undefined;
  private lastContactAt = 0;
  private resyncs = 0;
  /** Why the replica refuses this primary's data (state 'refused'). */
  private refusal: string | undefined;
  private stopping = false;
  private loop: Promise<void> | undefined;
  private retentionTrim: Promise<void> | undefined;

  constructor(private readonly options: SenderOptions) {
    this.pool = new PeerPool(options.replicaAddress, {
      connections: replicationSocketsMax,
      timeoutMs: replicationRequestTimeoutMs,
      replyBytesMax: internalReplyBytesMax,
    });
    this.headers = { [tokenHeader]: options.token, 'content-type': 'application/msgpack' };
  }

  start(): void {
    this.loop ??= this.run();
  }

  /** Called after each commit: there is something new to send, and the log may be over retention. */
  notify(): void {
    this.wakeup.notify();
    if (!this.retentionTrim && this.options.log.bytes() > this.options.logRetentionBytes) {
      // Enforced here as well as in the send loop, which may be sleeping in backoff while the replica is down.
      this.retentionTrim = this.enforceRetention()
        .catch((err) => this.options.logger.error(`trimming the replication log failed: ${describeError(err)}`))
        .finally(() => (this.retentionTrim = undefined));
    }
  }

  /**
   * Resolves once the replica has applied `seq`, or throws ReplicaTimeoutError after `timeoutMs`.
   * The number of waiting requests is bounded; past it the write, already committed, is answered at once
   * with ReplicaUnavailableError, which says so.
   */
  async waitForReplica(seq: number, timeoutMs: number): Promise<void> {
    if (this.ackedSeq !== undefined && this.ackedSeq >= seq) return;
    // Waiting is pointless when the last attempt already failed: say so at once.
    if (this.state === 'unreachable') throw new ReplicaUnavailableError(seq, 'unreachable');
    if (this.state === 'stopped') throw new ReplicaUnavailableError(seq, 'this primary is shutting down');
    if (this.state === 'refused') throw new ReplicaUnavailableError(seq, `it refuses this primary's data: ${this.refusal}`);
    if (this.waiters.size >= replicaAckWaitersMax) {
      throw new ReplicaUnavailableError(seq, `${replicaAckWaitersMax} requests already wait for it`);
    }
    const outcome = await new Promise<AckOutcome>((resolve) => {
      const waiter: AckWaiter = {
        seq,
        resolve,
        timer: setTimeout(() => {
          this.waiters.delete(waiter);
          resolve({ applied: false });
        }, timeoutMs),
      };
      this.waiters.add(waiter);
    });
    if (outcome.applied) return;
    if (outcome.unavailable !== undefined) throw new ReplicaUnavailableError(seq, outcome.unavailable);
    throw new ReplicaTimeoutError(seq, timeoutMs);
  }

  /** Ends every wait for the replica: it was found unreachable or refusing (undefined: the sender stops). */
  private releaseWaiters(unavailable: string | undefined): void {
    for (const waiter of this.waiters) {
      clearTimeout(waiter.timer);
      waiter.resolve({ applied: false, unavailable });
    }
    this.waiters.clear();
  }

  status(): Record<string, unknown> {
    const lastSeq = this.options.log.lastSeq();
    const acked = this.ackedSeq;
    const lagEntries = acked === undefined ? null : Math.max(0, lastSeq - acked);
    let lagSeconds: number | null = null;
    if (acked !== undefined) {
      const oldest = lagEntries ? this.options.log.timestampOf(acked + 1) : undefined;
      lagSeconds = lagEntries === 0 ? 0 : oldest === undefined ? null : Math.max(0, (Date.now() - oldest) / 1000);
    }
    return {
      replica: this.options.replicaAddress,
      state: this.state,
      reachable: this.state === 'streaming' || this.state === 'resyncing' || this.state === 'refused',
      refusal: this.refusal ?? null,
      applied_seq: acked ?? null,
      lag_entries: lagEntries,
      lag_seconds: lagSeconds,
      last_contact_ms_ago: this.lastContactAt ? Date.now() - this.lastContactAt : null,
      resyncs: this.resyncs,
      waiting_acks: this.waiters.size,
    };
  }

  /**
   * Stops the task. First gives the replica until `deadlineMs` to catch up with everything committed,
   * so a clean shutdown leaves nothing unreplicated when the replica is up.
   */
  async close(deadlineMs: number): Promise<void> {
    const deadline = Date.now() + deadlineMs;
    while (this.state === 'streaming' && this.ackedSeq !== undefined && this.ackedSeq < this.options.log.lastSeq() && Date.now() < deadline) {
      await sleep(replicationClosePollMs);
    }
    this.stopping = true;
    this.abort.abort();
    this.wakeup.notify();
    // Fails a request in flight at once, so the loop sees `stopping` without waiting for its timeout.
    const closed = this.pool.destroy();
    await this.loop;
    await this.retentionTrim;
    this.state = 'stopped';
    this.releaseWaiters(undefined);
    await closed;
  }

  private facts(lingered: boolean): SenderFacts {
    const { log } = this.options;
    return {
      stopping: this.stopping,
      state: this.state,
      ackedSeq: this.ackedSeq,
      firstSeq: log.firstSeq(),
      lastSeq: log.lastSeq(),
      ackWaiters: this.waiters.size,
      lingered,
    };
  }

  /** Rounds until closed: each decided by nextAction (sender-next.ts), failures retried with backoff. */
  private async run(): Promise<void> {
    const backoff = new Backoff(replicationBackoffFirstMs, replicationBackoffMaxMs, this.abort.signal);
    let lingered = false;
    for (;;) {
      const action = nextAction(this.facts(lingered));
      if (action.kind === 'stop') return;
      if (action.kind === 'linger') {
        await sleep(action.ms, this.abort.signal);
        lingered = true;
        continue;
      }
      lingered = false;
      try {
        const caughtUp = action.kind === 'resync' ? await this.resyncRound() : await this.send(action.fromSeq);
        backoff.reset();
        await this.trimLog(caughtUp);
        if (caughtUp) await this.wakeup.wait(replicationHeartbeatMs);
      } catch (err) {
        if (this.stopping) return;
        this.failed(err);
        await this.enforceRetention().catch(() => undefined);
        await backoff.wait();
      }
    }
  }

  /** A round failed: the replica refuses this primary's data, or cannot be reached, or refused only that request. */
  private failed(err: unknown): void {
    if (err instanceof ReplicaNotReady && (this.state === 'connecting' || this.state === 'streaming')) return;
    const outcome = afterFailure(err instanceof ReplicaRefusal ? err.reply : undefined);
    if (outcome.kind === 'refused') {
      if (this.state !== 'refused' || this.refusal !== outcome.reason) {
        this.options.logger.error(`the replica at ${this.options.replicaAddress} refuses this primary's data, retrying with backoff: ${outcome.reason}`);
      }
      this.state = 'refused';
      this.refusal = outcome.reason;
      this.releaseWaiters(`it refuses this primary's data: ${outcome.reason}`);
    } else if (outcome.kind === 'unreachable') {
      if (this.state !== 'unreachable')
        this.options.logger.warn(`replication to ${this.options.replicaAddress} failing, retrying with backoff: ${describeError(err)}`);
      this.state = 'unreachable';
      // Writes waiting for ack=replica learn now rather than at the end of their wait.
      this.releaseWaiters(`unreachable: ${describeError(err)}`);
    }
  }

  private async resyncRound(): Promise<boolean> {
    await this.resync();
    return false;
  }

  /** Sends the entries from `fromSeq` (none: a heartbeat); true when the replica has caught up. */
  private async send(fromSeq: number): Promise<boolean> {
    const { log } = this.options;
    const entries = log.read(fromSeq, replicationBatchEntriesMax, replicationBatchBytesMax);
    const message: ReplicateMessage = {
      primary: this.options.primaryAddress,
      datasetId: this.options.store.dataset.datasetId(),
      forkedFrom: this.options.store.dataset.forkedFrom() ?? null,
      primarySeq: log.lastSeq(),
      sentAt: Date.now(),
      layoutId: this.options.layoutId,
      migrating: this.options.migrating(),
      epoch: this.options.epoch(),
      entries,
    };
    const reply = await this.post(replicatePath, message);
    const outcome = afterReply(reply, log.lastSeq());
    if (outcome.kind === 'resync') {
      if (outcome.replicaAhead) this.ackedSeq = reply.appliedSeq;
      return this.resyncRound();
    }
    this.acknowledge(reply.appliedSeq);
    if (this.state !== 'streaming') this.options.logger.info(`replicating to ${this.options.replicaAddress} from seq ${reply.appliedSeq + 1}`);
    this.state = 'streaming';
    this.refusal = undefined;
    // The replica follows this dataset now: a fork point or a deliberate overwrite is settled.
    await this.options.store.dataset.replicaFollows();
    return outcome.caughtUp;
  }

  private async resync(): Promise<void> {
    const { store, logger } = this.options;
    this.state = 'resyncing';
    const resyncId = randomUUID();
    const snapshot = store.snapshot();
    logger.info(`full resync of ${this.options.replicaAddress} started: ${snapshot.keyCount} keys at seq ${snapshot.seq}`);
    try {
      await this.resyncStep({
        phase: 'begin',
        resyncId,
        primary: this.options.primaryAddress,
        datasetId: store.dataset.datasetId(),
        forkedFrom: store.dataset.forkedFrom() ?? null,
        snapshotSeq: snapshot.seq,
        keyCount: snapshot.keyCount,
        force: store.dataset.overwritesReplica(),
      });
      let after: Buffer | undefined;
      for (;;) {
        const chunk = snapshot.chunk(after, resyncChunkEntriesMax, resyncChunkBytesMax);
        if (chunk.pairs.length === 0) break;
        await this.resyncStep({ phase: 'chunk', resyncId, pairs: chunk.pairs });
        after = chunk.lastKey;
        if (this.stopping) throw new Error('stopping');
      }
      const reply = await this.resyncStep({
        phase: 'end',
        resyncId,
        datasetId: store.dataset.datasetId(),
        snapshotSeq: snapshot.seq,
        keyCount: snapshot.keyCount,
      });
      this.acknowledge(reply.appliedSeq);
      this.resyncs++;
      logger.info(`full resync of ${this.options.replicaAddress} done at seq ${snapshot.seq}`);
    } finally {
      snapshot.done();
    }
  }

  /** One step of a resync, sent with this primary's epoch as every resync step is. */
  private resyncStep(step: ResyncStep): Promise<ReplicaReply> {
    return this.post(resyncPath, { ...step, epoch: this.options.epoch() } satisfies ResyncMessage);
  }

  private async post(path: string, message: ReplicateMessage | ResyncMessage): Promise<ReplicaReply> {
    const response = await this.pool.exchange({ method: 'POST', path, headers: this.headers, body: encodeMessage(message) });
    this.lastContactAt = Date.now();
    const reply = parseReplicaReply(response.body);
    if (reply?.epoch && reply.epoch.epoch > message.epoch.epoch) this.options.onEpochSeen?.(this.options.shard, reply.epoch, this.options.replicaAddress);
    if (response.status === 200 && reply) return reply;
    if (response.status === 409 && reply) {
      // gap and resync_needed only move this primary's position; the rest stop the round.
      if (reply.error === 'gap' || reply.error === 'resync_needed') return reply;
      this.ackedSeq = undefined;
      throw new ReplicaRefusal(reply);
    }
    const answered = `replica answered ${response.status} to ${path}: ${response.body.toString('utf8', 0, 200)}`;
    if (response.status === 404 || response.status === 503) throw new ReplicaNotReady(answered);
    throw new Error(answered);
  }

  private acknowledge(appliedSeq: number): void {
    this.ackedSeq = appliedSeq;
    for (const waiter of this.waiters) {
      if (waiter.seq <= appliedSeq) {
        clearTimeout(waiter.timer);
        this.waiters.delete(waiter);
        waiter.resolve({ applied: true });
      }
    }
  }

  /**
   * Drops entries the replica has applied, then, while the log is over its retention bytes, the oldest
   * entries even if unapplied: a replica that far behind gets a full resync instead.
   */
  private async trimLog(caughtUp: boolean): Promise<void> {
    const { log } = this.options;
    if (trimApplied(this.facts(false), caughtUp)) await log.trim(this.ackedSeq!, logTrimEntriesMax);
    await this.enforceRetention();
  }

  private async enforceRetention(): Promise<void> {
    const { log } = this.options;
    while (log.bytes() > this.options.logRetentionBytes && log.firstSeq() <= log.lastSeq()) {
      // A tenth of the retained entries at a time: close to the bound without one trim per entry.
      const retained = log.lastSeq() - log.firstSeq() + 1;
      await log.trim(log.lastSeq(), Math.min(logTrimEntriesMax, Math.ceil(retained / 10)));
    }
  }
}
