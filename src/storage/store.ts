// The LMDB environment of one process: the shard's data, its metadata and, on a primary, the
// replication log.
//
// Keys are stored behind their slot as two big-endian bytes, so one slot's keys form one contiguous
// range (migration moves a slot at a time by scanning that range). Values are raw bytes.

import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { chmodSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { open, type Database, type RootDatabase, type Transaction } from 'lmdb';
import { readCacheEntriesMax, readCacheValueBytesMax, slotCount } from '../core/limits.js';
import { ReadCache } from './read-cache.js';
import type { LayoutRecord } from '../core/config.js';
import { entryBytes, ReplicationLog, type LogEntry } from './replication-log.js';

export type Mutation =
  | { readonly type: 'set'; readonly slot: number; readonly key: Buffer; readonly value: Buffer }
  | {
      readonly type: 'delete';
      readonly slot: number;
      readonly key: Buffer;
      /** Remember the delete (a tombstone) so that a key migrated in later does not bring it back. */
      readonly tombstone?: boolean;
    };

export interface CommitResult {
  /** Per mutation: for a set true, for a delete whether the key existed. */
  readonly applied: boolean[];
  /** The replication sequence of the last mutation (0 on a store without a log). */
  readonly seq: number;
}

/** Whether a replica in `state` holds a complete copy: it follows a dataset and no resync is under way. */
export function isComplete(state: ReplicaState): boolean {
  return state.datasetId !== undefined && state.resyncId === undefined;
}

/** Where a replica stands: the primary dataset it follows and how far it has applied its log. */
export interface ReplicaState {
  readonly datasetId: string | undefined;
  readonly appliedSeq: number;
  /** Set while a full resync is under way: the data is incomplete until it ends. */
  readonly resyncId: string | undefined;
}

export type ApplyOutcome =
  | { readonly ok: true; readonly appliedSeq: number }
  | { readonly ok: false; readonly reason: 'gap' | 'resync_needed'; readonly appliedSeq: number };

export interface SnapshotChunk {
  readonly pairs: [Buffer, Buffer][];
  /** The last storage key in the chunk: the next chunk starts after it. */
  readonly lastKey: Buffer | undefined;
}

/**
 * A consistent read-only view of the data and the sequence it corresponds to: on a primary its log's
 * last sequence, on a replica its applied sequence of the dataset it follows.
 */
export interface Snapshot {
  readonly seq: number;
  readonly keyCount: number;
  /** The primary dataset the data belongs to (on a replica: the one it follows, if any). */
  readonly datasetId: string | undefined;
  /** False on a replica whose resync is under way, or that never completed one: its data is partial. */
  readonly complete: boolean;
  chunk(afterKey: Buffer | undefined, entriesMax: number, bytesMax: number): SnapshotChunk;
  done(): void;
}

export interface SlotRangeDigest {
  readonly from: number;
  readonly to: number;
  readonly keys: number;
  readonly digest: string;
}

/** The slot-prefixed LMDB key of a user key. */
export function storageKey(slot: number, key: Uint8Array): Buffer {
  const stored = Buffer.allocUnsafe(2 + key.length);
  stored.writeUInt16BE(slot, 0);
  stored.set(key, 2);
  return stored;
}

const emptyBuffer = Buffer.alloc(0);

/** The end bound (exclusive) of a slot's key range; undefined for the last slot (to the end). */
function slotEnd(slot: number): Buffer | undefined {
  return slot + 1 < slotCount ? slotBound(slot + 1) : undefined;
}

function slotBound(slot: number): Buffer {
  const bound = Buffer.allocUnsafe(2);
  bound.writeUInt16BE(slot, 0);
  return bound;
}

const datasetIdKey = 'datasetId';
const topologyKey = 'topology';
const appliedSeqKey = 'replica.appliedSeq';
const replicaDatasetKey = 'replica.datasetId';
const resyncIdKey = 'replica.resyncId';
const primaryMigratingKey = 'replica.primaryMigrating';
/** Set on a primary started to overwrite its replica: the dataset id whose resync the replica must accept. */
const overwriteReplicaKey = 'primary.overwriteReplica';
/** Set on a primary that serves a dataset forked from another (see forkDataset), until its replica follows it. */
const forkedFromKey = 'primary.forkedFrom';

/**
 * Where a primary's dataset branched off the dataset before it: up to `seq` the two histories are the
 * same. A replica of the old dataset at or below `seq` can follow the new one without a resync; one
 * further on holds writes the primary lacks.
 */
export interface ForkPoint {
  readonly datasetId: string;
  readonly seq: number;
}

const migrationKey = 'migration';

/** A replica's memory of its primary's migrating flag, and the layout the primary ran when it said so. */
interface PrimaryMigrating {
  readonly topologyId: string;
  readonly migrating: boolean;
}

/**
 * A migration this node takes part in: the layout it moves from, the one it moves to, and counters.
 * Kept until every slot this node sends or receives is done; `finishedAt` then marks it complete.
 */
export interface MigrationRecord {
  readonly previous: LayoutRecord;
  readonly topologyId: string;
  readonly startedAt: number;
  readonly finishedAt?: number;
  readonly keysSent: number;
  readonly keysReceived: number;
}

export type SlotDirection = 'in' | 'out';
const directionBit = { in: 0, out: 1 << 16 } as const;

/** One migration batch as read from the sender's store: slot-prefixed keys with values. */
export interface OutgoingChunk {
  readonly pairs: [Buffer, Buffer][];
  /** Slots whose every key is in `pairs` (or that hold none): done once the receiver has them. */
  readonly completeSlots: number[];
}

export interface StoreOptions {
  readonly path: string;
  /** Primaries keep a replication log of every write; replicas do not. */
  readonly replicationLog: boolean;
}

export class Store {
  readonly path: string;
  private readonly root: RootDatabase;
  private readonly data: Database<Buffer, Buffer>;
  private readonly meta: Database<unknown, string>;
  /** Keys deleted while their slot was still migrating in: a late migration batch must not restore them. */
  private readonly tombstones: Database<Buffer, Buffer>;
  /** Migration progress: a key per slot done, `slot` for received and `slot | 1 << 16` for sent. */
  private readonly migratedSlots: Database<boolean, number>;
  readonly log: ReplicationLog | undefined;
  private closed = false;
  private readonly cache = new ReadCache(readCacheEntriesMax, readCacheValueBytesMax);
  /** A replica's data is complete (it follows a dataset and no resync is under way); cached for reads. */
  private complete: boolean;

  constructor(options: StoreOptions) {
    this.path = options.path;
    mkdirSync(this.path, { recursive: true, mode: 0o700 });
    // Options are spelled out rather than left to lmdb-js defaults because they decide durability:
    // overlappingSync lets the fsync of one commit overlap the next transaction, and every write is
    // acknowledged only after `flushed` resolves (see commit()), so nothing acknowledged can be lost.
    this.root = open({
      path: this.path,
      maxDbs: 8,
      compression: false,
      overlappingSync: true,
      noSync: false,
      noMetaSync: false,
      useWritemap: false,
      eventTurnBatching: true,
      commitDelay: 0,
    });
    this.data = this.root.openDB<Buffer, Buffer>('data', { keyEncoding: 'binary', encoding: 'binary' });
    this.meta = this.root.openDB<unknown, string>('meta', { encoding: 'msgpack' });
    this.tombstones = this.root.openDB<Buffer, Buffer>('tombstones', { keyEncoding: 'binary', encoding: 'binary' });
    this.migratedSlots = this.root.openDB<boolean, number>('migrated-slots', { keyEncoding: 'uint32', encoding: 'msgpack' });
    this.log = options.replicationLog ? new ReplicationLog(this.root, this.meta) : undefined;
    // Stored values are readable by this user only, also in a data dir created before this rule.
    chmodSync(this.path, 0o700);
    for (const entry of readdirSync(this.path, { withFileTypes: true })) if (entry.isFile()) chmodSync(join(this.path, entry.name), 0o600);
    this.complete = isComplete(this.replicaState());
  }

  /**
   * Whether this primary data dir holds no dataset yet: it is new, or a rebuild from the replica was cut
   * off. Such a primary must learn from its replica whether the shard has data before it serves.
   */
  isNewPrimary(): boolean {
    return this.meta.get(datasetIdKey) === undefined;
  }

  /** Starts a new, empty primary dataset (a new shard). */
  async startDataset(): Promise<void> {
    await this.durably(() => {
      if (this.meta.get(datasetIdKey) === undefined) this.meta.putSync(datasetIdKey, randomUUID());
    });
  }

  /**
   * Gives this primary's data a new dataset id that branches off the current one at the log's last
   * sequence. A primary that serves without having confirmed its position with its replica does this:
   * its history may have gone back (an older copy of its data dir, a lost unsynced tail), and writes it
   * takes from here must never be mistaken for the replica's writes of the same sequences. While the
   * replica has not followed, a second fork keeps the first fork point, the earliest branch.
   */
  async forkDataset(): Promise<ForkPoint> {
    const log = this.log!;
    return this.durably(() => {
      const fork = (this.meta.get(forkedFromKey) as ForkPoint | undefined) ?? { datasetId: this.meta.get(datasetIdKey) as string, seq: log.lastSeq() };
      this.meta.putSync(forkedFromKey, fork);
      this.meta.putSync(datasetIdKey, randomUUID());
      return fork;
    });
  }

  /** Where this primary's dataset branched off, while its replica has not yet followed it. */
  forkedFrom(): ForkPoint | undefined {
    return this.meta.get(forkedFromKey) as ForkPoint | undefined;
  }

  /**
   * A deliberate fresh start or restore (--overwrite-replica): a new dataset id, unrelated to the one the
   * replica follows, and a mark that makes the replica accept it even where its history is longer.
   */
  async startOverwrite(): Promise<void> {
    await this.durably(() => {
      const id = randomUUID();
      this.meta.putSync(datasetIdKey, id);
      this.meta.removeSync(forkedFromKey);
      this.meta.putSync(overwriteReplicaKey, id);
    });
  }

  /** Whether this primary was started to overwrite its replica's data (until the replica follows it). */
  overwritesReplica(): boolean {
    const marked = this.meta.get(overwriteReplicaKey);
    return marked !== undefined && marked === this.meta.get(datasetIdKey);
  }

  /** The replica follows this primary's dataset: a fork point or an overwrite is settled. */
  async replicaFollows(): Promise<void> {
    if (this.meta.get(forkedFromKey) === undefined && this.meta.get(overwriteReplicaKey) === undefined) return;
    await this.durably(() => {
      this.meta.removeSync(forkedFromKey);
      this.meta.removeSync(overwriteReplicaKey);
    });
  }

  /** Whether a replica holds a complete copy of some primary dataset (false before its first resync ends). */
  replicaComplete(): boolean {
    return this.complete;
  }

  /** The id of this primary's dataset (like Redis's replication id). */
  datasetId(): string {
    const id = this.meta.get(datasetIdKey) as string | undefined;
    assert.ok(id !== undefined, 'a primary replicates only once it has a dataset');
    return id;
  }

  /**
   * What a replica last heard from its primary under layout `topologyId`: whether keys may still be
   * moving to it. Undefined when it heard nothing under that layout: a flag heard under another layout
   * (or kept by a build that did not record the layout) says nothing about which keys move now.
   */
  primaryMigrating(topologyId: string): boolean | undefined {
    const heard = this.meta.get(primaryMigratingKey) as PrimaryMigrating | boolean | undefined;
    return typeof heard === 'object' && heard.topologyId === topologyId ? heard.migrating : undefined;
  }

  /** Remembers the primary's migrating flag with its layout, so a replica restarted while its primary is down knows it. */
  async notePrimaryMigrating(topologyId: string, migrating: boolean): Promise<void> {
    if (this.primaryMigrating(topologyId) !== migrating) await this.meta.put(primaryMigratingKey, { topologyId, migrating } satisfies PrimaryMigrating);
  }

  get(slot: number, key: Uint8Array): Buffer | undefined {
    const stored = storageKey(slot, key);
    const id = stored.toString('latin1');
    const cached = this.cache.get(id);
    if (cached !== undefined) return cached;
    const value = this.data.get(stored);
    if (value !== undefined) this.cache.remember(id, value);
    return value;
  }

  /**
   * After a commit: make every later read see it (reset LMDB's read snapshot), then drop cached values
   * of the keys it changed, including any a read cached from the old snapshot while the commit was on
   * its way.
   */
  private forgetCommitted(ids: readonly string[] | 'all'): void {
    this.root.resetReadTxn();
    if (ids === 'all') this.cache.clear();
    else for (const id of ids) this.cache.forget(id);
  }

  /**
   * Applies mutations atomically, in order, in one LMDB transaction together with their replication log
   * entries, and resolves once that transaction is durable on disk. lmdb-js groups every transaction
   * queued in the same event turn into one commit and one fsync, so concurrent clients share the cost of
   * a sync (group commit).
   */
  async commit(mutations: readonly Mutation[]): Promise<CommitResult> {
    const touched: string[] = [];
    return this.durably(() => {
      const ts = Date.now();
      let seq = 0;
      const applied = mutations.map((m) => {
        const done = this.applyInTransaction(m, touched);
        if (this.log) seq = this.log.appendInTransaction(m, ts);
        return done;
      });
      return { applied, seq };
    }, touched);
  }

  /**
   * Runs `body` in a write transaction and resolves with its result once that transaction is durable.
   * After the commit, the read snapshot is reset and the cached values of `touched` keys are dropped
   * (see forgetCommitted).
   *
   * The transaction promise resolves at commit, when the write is visible and survives a crash of this
   * process. With overlappingSync the fsync comes after; `flushed` resolves once everything committed so
   * far is on disk, which is when a write survives a crash of the machine. Acknowledge only then.
   */
  private async durably<T>(body: () => T, touched?: readonly string[] | 'all'): Promise<T> {
    const result = await this.root.transaction(body);
    if (touched !== undefined) this.forgetCommitted(touched);
    await this.root.flushed;
    return result;
  }

  /** Applies one mutation inside a write transaction; adds its cache id to `touched` for forgetCommitted(). */
  private applyInTransaction(m: Mutation, touched: string[]): boolean {
    const key = storageKey(m.slot, m.key);
    const id = key.toString('latin1');
    this.cache.forget(id);
    touched.push(id);
    if (m.type === 'set') {
      this.data.putSync(key, m.value);
      return true;
    }
    if (m.tombstone) this.tombstones.putSync(key, emptyBuffer);
    return this.data.removeSync(key);
  }

  replicaState(): ReplicaState {
    return {
      datasetId: this.meta.get(replicaDatasetKey) as string | undefined,
      appliedSeq: (this.meta.get(appliedSeqKey) as number | undefined) ?? 0,
      resyncId: this.meta.get(resyncIdKey) as string | undefined,
    };
  }

  /**
   * Applies a batch of the primary's log on a replica, in one transaction together with the new applied
   * sequence, and resolves once durable. Entries already applied are skipped; a batch that starts past
   * the next expected sequence is refused as a gap; a batch from another dataset, or one arriving while
   * the data is incomplete (resync under way), asks for a resync. `entries` must be contiguous.
   */
  async applyReplicated(datasetId: string, entries: readonly LogEntry[], forkedFrom: ForkPoint | null): Promise<ApplyOutcome> {
    const touched: string[] = [];
    return this.durably((): ApplyOutcome => {
      const state = this.replicaState();
      if (state.resyncId !== undefined) return { ok: false, reason: 'resync_needed', appliedSeq: state.appliedSeq };
      if (state.datasetId !== datasetId) {
        // The primary's dataset branched off the one followed here at a point this replica has not passed:
        // its history up to here is the same, so it follows the new dataset from where it stands (Redis's
        // second replication id).
        const follows = forkedFrom !== null && state.datasetId === forkedFrom.datasetId && state.appliedSeq <= forkedFrom.seq;
        if (!follows) return { ok: false, reason: 'resync_needed', appliedSeq: state.appliedSeq };
        this.meta.putSync(replicaDatasetKey, datasetId);
      }
      const fresh = entries.filter((e) => e.seq > state.appliedSeq);
      if (fresh.length === 0) return { ok: true, appliedSeq: state.appliedSeq };
      if (fresh[0]!.seq !== state.appliedSeq + 1) return { ok: false, reason: 'gap', appliedSeq: state.appliedSeq };
      fresh.forEach((e, i) => {
        assert.equal(e.seq, state.appliedSeq + 1 + i, 'replicated batch is not contiguous');
        this.applyInTransaction(e.type === 'set' ? { ...e, type: 'set', value: e.value! } : { ...e, type: 'delete' }, touched);
      });
      const appliedSeq = state.appliedSeq + fresh.length;
      this.meta.putSync(appliedSeqKey, appliedSeq);
      return { ok: true, appliedSeq };
    }, touched);
  }

  /** Starts a full resync on a replica: drops all data and marks it incomplete until endResync(). */
  async beginResync(resyncId: string): Promise<void> {
    this.complete = false;
    await this.durably(() => {
      this.cache.clear();
      this.data.clearSync();
      this.meta.putSync(resyncIdKey, resyncId);
      this.meta.removeSync(replicaDatasetKey);
      this.meta.putSync(appliedSeqKey, 0);
    }, 'all');
  }

  /** Stores one snapshot chunk of a resync. Refused (false) when `resyncId` is not the resync under way. */
  async applyResyncChunk(resyncId: string, pairs: readonly [Buffer, Buffer][]): Promise<boolean> {
    const ok = await this.durably(() => {
      if (this.meta.get(resyncIdKey) !== resyncId) return false;
      this.cache.clear();
      for (const [key, value] of pairs) this.data.putSync(key, value);
      return true;
    }, 'all');
    return ok;
  }

  /**
   * Ends a resync: the replica now holds the primary's snapshot at `snapshotSeq` of dataset `datasetId`.
   * Refused (false) when another resync took over or the key count does not match the snapshot's.
   */
  async endResync(resyncId: string, datasetId: string, snapshotSeq: number, keyCount: number): Promise<boolean> {
    const ok = await this.durably(() => {
      if (this.meta.get(resyncIdKey) !== resyncId || this.data.getCount() !== keyCount) return false;
      this.meta.removeSync(resyncIdKey);
      this.meta.putSync(replicaDatasetKey, datasetId);
      this.meta.putSync(appliedSeqKey, snapshotSeq);
      return true;
    });
    if (ok) this.complete = true;
    return ok;
  }

  /**
   * Starts rebuilding a primary from its replica: drops the data and the log and forgets the dataset id,
   * so that a crash before endRebuild() leaves a primary that is new again and starts over.
   */
  async beginRebuild(): Promise<void> {
    assert.ok(this.log, 'only a primary rebuilds from its replica');
    const log = this.log;
    await this.durably(() => {
      this.cache.clear();
      this.data.clearSync();
      this.meta.removeSync(datasetIdKey);
      this.meta.removeSync(overwriteReplicaKey);
      this.meta.removeSync(forkedFromKey);
      log.resetInTransaction(0);
    }, 'all');
  }

  /** Stores one chunk of the replica's snapshot during a rebuild. */
  async applyRebuildChunk(pairs: readonly [Buffer, Buffer][]): Promise<void> {
    await this.durably(() => {
      this.cache.clear();
      for (const [key, value] of pairs) this.data.putSync(key, value);
    }, 'all');
  }

  /**
   * Ends a rebuild: the primary now holds the replica's snapshot. With `datasetId` it continues that
   * dataset at `seq`, so the replica goes on streaming without a resync; without it (the replica's
   * copy was partial) it starts a new dataset. False when the key count does not match the snapshot's.
   */
  async endRebuild(datasetId: string | undefined, seq: number, keyCount: number): Promise<boolean> {
    assert.ok(this.log, 'only a primary rebuilds from its replica');
    const log = this.log;
    return this.durably(() => {
      if (this.data.getCount() !== keyCount) return false;
      log.resetInTransaction(datasetId === undefined ? 0 : seq);
      this.meta.putSync(datasetIdKey, datasetId ?? randomUUID());
      return true;
    });
  }

  /** A consistent snapshot of the data with the sequence it reflects. Call done() when finished. */
  snapshot(): Snapshot {
    const transaction: Transaction = this.root.useReadTransaction();
    const read = (key: string) => this.meta.get(key, { transaction });
    const keyCount = this.data.getCount({ transaction });
    const seq = this.log ? this.log.lastSeq(transaction) : ((read(appliedSeqKey) as number | undefined) ?? 0);
    const datasetId = (read(this.log ? datasetIdKey : replicaDatasetKey) as string | undefined) ?? undefined;
    const complete = this.log !== undefined || isComplete({ datasetId, appliedSeq: seq, resyncId: read(resyncIdKey) as string | undefined });
    return {
      seq,
      keyCount,
      datasetId,
      complete,
      chunk: (afterKey, entriesMax, bytesMax) => {
        const pairs: [Buffer, Buffer][] = [];
        let bytes = 0;
        for (const { key, value } of this.data.getRange({ transaction, start: afterKey, limit: entriesMax + 1 })) {
          if (afterKey && pairs.length === 0 && key.equals(afterKey)) continue;
          const size = entryBytes({ key, value });
          if (pairs.length >= entriesMax || (pairs.length > 0 && bytes + size > bytesMax)) break;
          pairs.push([Buffer.from(key), Buffer.from(value)]);
          bytes += size;
        }
        return { pairs, lastKey: pairs.at(-1)?.[0] };
      },
      done: () => transaction.done(),
    };
  }

  /**
   * Digests of the keys and values in `buckets` equal ranges of slots from `fromSlot` to `toSlot`, read
   * in one consistent snapshot. Equal digests mean equal data; a differing range can be narrowed further.
   */
  digest(fromSlot: number, toSlot: number, buckets: number): SlotRangeDigest[] {
    assert.ok(fromSlot >= 0 && toSlot < slotCount && fromSlot <= toSlot && buckets >= 1);
    const transaction = this.root.useReadTransaction();
    try {
      const span = toSlot - fromSlot + 1;
      const count = Math.min(buckets, span);
      const out: SlotRangeDigest[] = [];
      for (let b = 0; b < count; b++) {
        const from = fromSlot + Math.floor((b * span) / count);
        const to = fromSlot + Math.floor(((b + 1) * span) / count) - 1;
        const hash = createHash('sha256');
        let keys = 0;
        const end = slotEnd(to);
        for (const { key, value } of this.data.getRange({ transaction, start: slotBound(from), end })) {
          const lengths = Buffer.allocUnsafe(8);
          lengths.writeUInt32BE(key.length, 0);
          lengths.writeUInt32BE(value.length, 4);
          hash.update(lengths).update(key).update(value);
          keys++;
        }
        out.push({ from, to, keys, digest: hash.digest('hex') });
      }
      return out;
    } finally {
      transaction.done();
    }
  }

  /** The layout this store's node last ran with, if any (a record without shards is from before resize). */
  topology(): (LayoutRecord & { shardCount?: number }) | undefined {
    return this.meta.get(topologyKey) as (LayoutRecord & { shardCount?: number }) | undefined;
  }

  migration(): MigrationRecord | undefined {
    return this.meta.get(migrationKey) as MigrationRecord | undefined;
  }

  /**
   * Records the layout the node runs with and, when it starts a migration, the migration, in one durable
   * transaction: after a crash the node finds either both or neither.
   */
  async recordTopology(topology: LayoutRecord, migration?: MigrationRecord): Promise<void> {
    await this.durably(() => {
      this.meta.putSync(topologyKey, topology);
      if (migration) {
        this.migratedSlots.clearSync();
        this.tombstones.clearSync();
        this.meta.putSync(migrationKey, migration);
      }
    });
  }

  /** The slots recorded as done in one direction of the current migration. */
  migratedSlotSet(direction: SlotDirection): Uint8Array {
    const done = new Uint8Array(slotCount);
    const bit = directionBit[direction];
    for (const key of this.migratedSlots.getKeys({ start: bit, end: bit + slotCount })) done[key - bit] = 1;
    return done;
  }

  /** Whether a delete of this key was recorded while its slot was migrating in. */
  hasTombstone(slot: number, key: Uint8Array): boolean {
    return this.tombstones.doesExist(storageKey(slot, key));
  }

  /**
   * Receiving side of a migration batch, in one durable transaction: stores each pair whose slot
   * `accepts` unless the key exists here (a newer write) or has a tombstone (a newer delete), and marks
   * `doneSlots` received, dropping their tombstones. Inserted keys go into the replication log.
   * Returns how many keys were inserted.
   */
  async importMigrated(pairs: readonly [Buffer, Buffer][], doneSlots: readonly number[], accepts: (slot: number) => boolean): Promise<number> {
    const touched: string[] = [];
    const inserted = await this.durably(() => {
      const ts = Date.now();
      let count = 0;
      for (const [stored, value] of pairs) {
        const slot = stored.readUInt16BE(0);
        if (!accepts(slot) || this.data.doesExist(stored) || this.tombstones.doesExist(stored)) continue;
        const m: Mutation = { type: 'set', slot, key: stored.subarray(2), value };
        this.applyInTransaction(m, touched);
        this.log?.appendInTransaction(m, ts);
        count++;
      }
      for (const slot of doneSlots) {
        if (!accepts(slot)) continue;
        for (const key of this.tombstones.getKeys({ start: slotBound(slot), end: slotEnd(slot) })) this.tombstones.removeSync(key);
        this.migratedSlots.putSync(directionBit.in + slot, true);
      }
      this.bumpMigration('keysReceived', count);
      return count;
    }, touched);
    return inserted;
  }

  /**
   * Sending side: up to `entriesMax` keys (and, past the first, `bytesMax` bytes) of `slots`, in order.
   * A slot whose keys all fit is listed complete.
   */
  outgoingChunk(slots: readonly number[], entriesMax: number, bytesMax: number): OutgoingChunk {
    const pairs: [Buffer, Buffer][] = [];
    const completeSlots: number[] = [];
    let bytes = 0;
    const transaction = this.root.useReadTransaction();
    try {
      for (const slot of slots) {
        for (const { key, value } of this.data.getRange({ transaction, start: slotBound(slot), end: slotEnd(slot) })) {
          const size = entryBytes({ key, value });
          if (pairs.length >= entriesMax || (pairs.length > 0 && bytes + size > bytesMax)) return { pairs, completeSlots };
          pairs.push([Buffer.from(key), Buffer.from(value)]);
          bytes += size;
        }
        completeSlots.push(slot);
      }
      return { pairs, completeSlots };
    } finally {
      transaction.done();
    }
  }

  /**
   * After the receiver stored a batch durably: deletes the sent keys here (logged, so the replica
   * follows) and marks `completeSlots` sent, in one durable transaction.
   */
  async removeMigrated(storageKeys: readonly Buffer[], completeSlots: readonly number[]): Promise<void> {
    const touched: string[] = [];
    await this.durably(() => {
      const ts = Date.now();
      for (const stored of storageKeys) {
        const m: Mutation = { type: 'delete', slot: stored.readUInt16BE(0), key: stored.subarray(2) };
        if (this.data.doesExist(stored)) {
          this.applyInTransaction(m, touched);
          this.log?.appendInTransaction(m, ts);
        }
      }
      for (const slot of completeSlots) this.migratedSlots.putSync(directionBit.out + slot, true);
      this.bumpMigration('keysSent', storageKeys.length);
    }, touched);
  }

  private bumpMigration(counter: 'keysSent' | 'keysReceived', by: number): void {
    const record = this.meta.get(migrationKey) as MigrationRecord | undefined;
    if (record && by > 0) this.meta.putSync(migrationKey, { ...record, [counter]: record[counter] + by });
  }

  /** Marks the migration finished and drops its per-slot progress and tombstones. */
  async finishMigration(finishedAt: number): Promise<void> {
    await this.durably(() => {
      const record = this.meta.get(migrationKey) as MigrationRecord | undefined;
      if (record) this.meta.putSync(migrationKey, { ...record, finishedAt });
      this.migratedSlots.clearSync();
      this.tombstones.clearSync();
    });
  }

  /** Writes a consistent copy of the whole environment into the new directory `dir` (as its data.mdb). */
  async backup(dir: string): Promise<void> {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    await this.root.backup(dir, false);
  }

  /** Number of keys held. */
  count(): number {
    return this.data.getCount();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.root.flushed;
    await this.root.close();
  }
}
