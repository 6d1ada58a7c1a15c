// Online resize: moving the keys of slots whose owner changed from their previous owner's primary to
// their new owner's primary.
//
// A node that starts with a layout different from the one it last ran with records a migration (the
// previous layout) before it serves anything. From the two layouts every node derives the same plan: a
// slot moves when its owner's name differs between them. The previous owner of each moving slot sends
// the slot's keys in bounded batches (one contiguous LMDB range per slot); the new owner stores each key
// unless it already has a newer write or a tombstone for it, durably and through its replication log;
// only then does the sender delete what it sent and mark finished slots sent, also logged, so both
// replicas follow. A batch lists the slots it completes, and the new owner stops falling back to the
// previous owner for them. Each side keeps its progress in LMDB, so after a kill -9 it resumes where it
// stood: a re-sent key is skipped by the receiver, a re-sent slot already received is ignored.

import { Backoff, sleep } from '../core/backoff.js';
import { pack, unpack } from 'msgpackr';
import type { Config, LayoutRecord, ShardConfig } from '../core/config.js';
import { BadRequestError, LayoutMismatchError } from '../core/errors.js';
import { InternalClient } from '../peer/internal-client.js';
import {
  internalReplyBytesMax,
  keyBytesMax,
  migrationBackoffFirstMs,
  migrationBackoffMaxMs,
  migrationBatchBytesMax,
  migrationFinishedPollMs,
  migrationRequestTimeoutMs,
  migrationSocketsMax,
  slotCount,
  valueBytesMax,
} from '../core/limits.js';
import { nextSendSlots, planMigration } from './migration-plan.js';
import type { MigrationRecord } from '../storage/migration-store.js';
import type { Store } from '../storage/store.js';
import type { Log } from '../core/log.js';

export const migratePath = '/internal/migrate';

/** One batch from a previous owner to a new owner. */
export interface MigrateMessage {
  /** The sending shard's name. */
  readonly from: string;
  /** The sender's address: the receiver takes keys only from the member its own layouts put there. */
  readonly address: string;
  /** The layout the sender migrates to: the receiver must run the same one. */
  readonly layoutId: string;
  /** The layout the sender migrates from, so a receiver that has not learned it yet can. */
  readonly previous: LayoutRecord;
  /** Slot-prefixed storage keys with their values. */
  readonly pairs: readonly [Buffer, Buffer][];
  /** Slots whose keys have all been sent (in this batch or earlier ones). */
  readonly doneSlots: readonly number[];
}

export interface MigrateReply {
  readonly inserted: number;
}

function invalid(what: string): never {
  throw new BadRequestError(`invalid migration message: ${what}`);
}

const isSlot = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 0 && (v as number) < slotCount;

/** Validates a layout record received from a peer (the same shape a config yields). */
export function decodeLayoutRecord(raw: unknown, what: string): LayoutRecord {
  const r = raw as Record<string, unknown> | null;
  if (typeof r !== 'object' || r === null || typeof r['layoutId'] !== 'string' || !Array.isArray(r['shards'])) invalid(what);
  const shards = (r['shards'] as unknown[]).map((s, i): ShardConfig => {
    const shard = s as Record<string, unknown> | null;
    if (typeof shard !== 'object' || shard === null) invalid(`${what}.shards[${i}]`);
    const { name, idx, address, replica } = shard;
    if (typeof name !== 'string' || idx !== i || typeof address !== 'string' || typeof replica !== 'string') invalid(`${what}.shards[${i}]`);
    return { name, idx, address, replica };
  });
  if (shards.length === 0) invalid(`${what}.shards`);
  return { layoutId: r['layoutId'] as string, shards };
}

export function decodeMigrate(body: Buffer): MigrateMessage {
  let m: Record<string, unknown>;
  try {
    m = unpack(body) as Record<string, unknown>;
  } catch {
    invalid('not msgpack');
  }
  if (typeof m !== 'object' || m === null) invalid('not a map');
  const { from, address, layoutId, pairs, doneSlots } = m;
  if (typeof from !== 'string' || typeof address !== 'string' || typeof layoutId !== 'string') invalid('from/address/layoutId');
  if (!Array.isArray(pairs) || !Array.isArray(doneSlots) || doneSlots.length > slotCount) invalid('pairs/doneSlots');
  if (!doneSlots.every(isSlot)) invalid('doneSlots');
  return {
    from,
    address,
    layoutId,
    previous: decodeLayoutRecord(m['previous'], 'previous'),
    pairs: pairs.map((p: unknown, i): [Buffer, Buffer] => {
      if (!Array.isArray(p) || p.length !== 2 || !(p[0] instanceof Uint8Array) || !(p[1] instanceof Uint8Array)) invalid(`pairs[${i}]`);
      const [key, value] = p as [Uint8Array, Uint8Array];
      if (key.length < 3 || key.length > keyBytesMax + 2 || value.length > valueBytesMax) invalid(`pairs[${i}] size`);
      if (!isSlot((key[0]! << 8) | key[1]!)) invalid(`pairs[${i}] slot`);
      return [Buffer.from(key), Buffer.from(value)];
    }),
    doneSlots: doneSlots as number[],
  };
}

export interface MigrationOptions {
  readonly store: Store;
  readonly config: Config;
  /** This node's shard name (in a drain, a shard that is no longer in the config). */
  readonly self: string;
  /** This node's address, sent with every batch. */
  readonly address: string;
  readonly record: MigrationRecord;
  readonly token: string;
  readonly log: Log;
  /** Called after every local change, so the replication sender wakes up. */
  readonly onCommit: () => void;
  /** A new owner as it stands now: batches go to its current primary, which a failover may have changed. */
  readonly current: (shard: ShardConfig) => ShardConfig;
}

export class Migration {
  private readonly previousShards: readonly ShardConfig[];
  private readonly previousOwners: Uint16Array;
  /** 1 while a slot still has to arrive here. */
  private readonly incoming: Uint8Array;
  /** 1 while a slot still has to be sent from here. */
  private readonly outgoing: Uint8Array;
  private readonly newOwnerNames: readonly string[];
  private readonly slotsToReceive: number;
  private readonly slotsToSend: number;
  private incomingLeft = 0;
  private outgoingLeft = 0;
  private finishedAt: number | undefined;
  private finishing: Promise<void> | undefined;
  private closed = false;
  private loop: Promise<void> | undefined;
  private readonly abort = new AbortController();
  private readonly http: InternalClient;
  private lastError: string | undefined;

  constructor(private readonly options: MigrationOptions) {
    const { store, config, self, record } = options;
    this.previousShards = record.previous.shards;
    const plan = planMigration({
      previous: this.previousShards,
      next: config.shards,
      self,
      received: store.migrations.migratedSlotSet('in'),
      sent: store.migrations.migratedSlotSet('out'),
    });
    this.previousOwners = plan.previousOwners;
    this.newOwnerNames = plan.newOwnerNames;
    this.incoming = plan.incoming;
    this.outgoing = plan.outgoing;
    this.slotsToReceive = plan.slotsToReceive;
    this.slotsToSend = plan.slotsToSend;
    this.incomingLeft = this.incoming.reduce((n, v) => n + v, 0);
    this.outgoingLeft = this.outgoing.reduce((n, v) => n + v, 0);
    this.finishedAt = record.finishedAt;
    this.http = new InternalClient({
      token: options.token,
      timeoutMs: migrationRequestTimeoutMs,
      replyBytesMax: internalReplyBytesMax,
      socketsMax: migrationSocketsMax,
      signal: this.abort.signal,
    });
  }

  get previous(): LayoutRecord {
    return this.options.record.previous;
  }

  /** Whether slots still move to or from this node. */
  active(): boolean {
    return this.finishedAt === undefined;
  }

  /** Whether `slot` is owned here now but its keys may still be on its previous owner. */
  incomingPending(slot: number): boolean {
    return this.incoming[slot] === 1;
  }

  /** The primary that owned `slot` in the previous layout. */
  previousOwner(slot: number): ShardConfig {
    return this.previousShards[this.previousOwners[slot]!]!;
  }

  /** Starts sending this node's outgoing slots, and finishes at once when nothing moves here. */
  start(): void {
    // A finished migration has nothing left to send (its slot marks are cleared when it finishes).
    if (this.loop || this.finishedAt !== undefined) return;
    this.options.log.info(
      `migration from layout ${this.previous.layoutId} to ${this.options.config.layoutId}: ` +
        `${this.outgoingLeft} of ${this.slotsToSend} slots to send, ${this.incomingLeft} of ${this.slotsToReceive} to receive`,
    );
    this.loop = this.run().catch((err: unknown) => this.options.log.error(`migration sender stopped: ${(err as Error).stack}`));
  }

  /** Stores a batch from a previous owner (the /internal/migrate handler). */
  async receive(message: MigrateMessage): Promise<MigrateReply> {
    const { config } = this.options;
    if (message.layoutId !== config.layoutId || message.previous.layoutId !== this.previous.layoutId) {
      throw new LayoutMismatchError(
        `${message.from} migrates from layout ${message.previous.layoutId} to ${message.layoutId}; ` +
          `this node migrates from ${this.previous.layoutId} to ${config.layoutId}`,
        { sender: message.from, layout_id: config.layoutId },
      );
    }
    const inserted = await this.options.store.migrations.importMigrated(message.pairs, message.doneSlots, (slot) => this.incoming[slot] === 1);
    for (const slot of message.doneSlots) {
      if (this.incoming[slot] === 1) {
        this.incoming[slot] = 0;
        this.incomingLeft--;
      }
    }
    this.options.onCommit();
    this.maybeFinish();
    return { inserted };
  }

  private async run(): Promise<void> {
    const { store, config, self } = this.options;
    const backoff = new Backoff(migrationBackoffFirstMs, migrationBackoffMaxMs, this.abort.signal);
    while (!this.closed && this.outgoingLeft > 0) {
      const { to, slots } = nextSendSlots(this.outgoing, this.newOwnerNames)!;
      const target = this.options.current(config.shards.find((s) => s.name === to)!);
      const chunk = store.migrations.outgoingChunk(slots, config.migration.batchKeys, migrationBatchBytesMax);
      const message: MigrateMessage = {
        from: self,
        address: this.options.address,
        layoutId: config.layoutId,
        previous: this.previous,
        pairs: chunk.pairs,
        doneSlots: chunk.completeSlots,
      };
      try {
        await this.send(target, message);
      } catch (err) {
        if (this.closed) return;
        const reason = (err as Error).message;
        if (reason !== this.lastError) this.options.log.warn(`migration batch to ${target.name} at ${target.address} failed, retrying: ${reason}`);
        this.lastError = reason;
        await backoff.wait();
        continue;
      }
      backoff.reset();
      this.lastError = undefined;
      await store.migrations.removeMigrated(
        chunk.pairs.map(([key]) => key),
        chunk.completeSlots,
      );
      for (const slot of chunk.completeSlots) {
        this.outgoing[slot] = 0;
        this.outgoingLeft--;
      }
      this.options.onCommit();
      if (config.migration.batchPauseMs > 0) await sleep(config.migration.batchPauseMs, this.abort.signal);
    }
    this.maybeFinish();
  }

  private async send(target: ShardConfig, message: MigrateMessage): Promise<void> {
    const response = await this.http.post<MigrateReply & { message?: string }>(target.address, migratePath, pack(message));
    if (response.status !== 200) throw new Error(`HTTP ${response.status}: ${response.data?.message ?? 'no message'}`);
  }

  private maybeFinish(): void {
    if (this.finishedAt !== undefined || this.incomingLeft > 0 || this.outgoingLeft > 0 || this.finishing) return;
    const at = Date.now();
    this.finishing = this.options.store.migrations.finishMigration(at).then(() => {
      this.finishedAt = at;
      const record = this.options.store.migrations.migration();
      this.options.log.info(
        `migration to layout ${this.options.config.layoutId} finished: sent ${this.slotsToSend} slots ` +
          `(${record?.keysSent ?? 0} keys), received ${this.slotsToReceive} slots (${record?.keysReceived ?? 0} keys) ` +
          `in ${((at - this.options.record.startedAt) / 1000).toFixed(1)} s`,
      );
    });
  }

  /** Resolves once the migration has finished here (for drains); never when this node is closed first. */
  async finished(): Promise<boolean> {
    while (!this.closed) {
      if (this.finishedAt !== undefined) return true;
      await sleep(migrationFinishedPollMs, this.abort.signal);
    }
    return false;
  }

  status(): Record<string, unknown> {
    const record = this.options.store.migrations.migration();
    return {
      state: this.finishedAt === undefined ? 'migrating' : 'done',
      from_layout: this.previous.layoutId,
      to_layout: this.options.config.layoutId,
      slots_to_send: this.slotsToSend,
      slots_sent: this.slotsToSend - this.outgoingLeft,
      slots_to_receive: this.slotsToReceive,
      slots_received: this.slotsToReceive - this.incomingLeft,
      keys_sent: record?.keysSent ?? 0,
      keys_received: record?.keysReceived ?? 0,
      started_at: new Date(this.options.record.startedAt).toISOString(),
      finished_at: this.finishedAt === undefined ? null : new Date(this.finishedAt).toISOString(),
      last_error: this.lastError ?? null,
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.abort.abort();
    await this.loop;
    await this.finishing;
    this.http.close();
  }
}
