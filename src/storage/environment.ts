// The LMDB environment of one process and the shard's data in it: its databases, reads through the
// read cache, durable transactions grouped per event turn, and closing. The store's other parts
// (standing.ts, dataset-store.ts, migration-store.ts, failover-store.ts) each own some of the keys in
// it and write them through durably().

import { chmodSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { open, type Database, type RootDatabase } from 'lmdb';
import { batchSizeBuckets, durationBucketsS, Histogram } from '../core/histogram.js';
import { readCacheEntriesMax, readCacheValueBytesMax } from '../core/limits.js';
import { storageKey, type Mutation } from './keys.js';
import { ReadCache } from './read-cache.js';
import { ReplicationLog } from './replication-log.js';

export interface StoreOptions {
  readonly path: string;
  /** Whether the store starts as a primary's, keeping a replication log of every write (a replica's does not). */
  readonly replicationLog: boolean;
}

const emptyBuffer = Buffer.alloc(0);

/** Group commits, for /metrics: how long each took to become durable and how many writes it carried. */
export class CommitStats {
  readonly seconds = new Histogram(durationBucketsS);
  readonly writes = new Histogram(batchSizeBuckets);
}

/** The writes of one event turn, which lmdb-js commits and syncs together. */
interface CommitGroup {
  readonly started: number;
  writes: number;
  counted: boolean;
}

export class StoreEnvironment {
  readonly path: string;
  readonly root: RootDatabase;
  readonly data: Database<Buffer, Buffer>;
  readonly meta: Database<unknown, string>;
  /** Keys deleted while their slot was still migrating in: a late migration batch must not restore them. */
  readonly tombstones: Database<Buffer, Buffer>;
  /** Migration progress: a key per slot done, `slot` for received and `slot | 1 << 16` for sent. */
  readonly migratedSlots: Database<boolean, number>;
  /** The replication log, opened in every store; only a primary's writes go to it (see Standing). */
  readonly logDb: ReplicationLog;
  private closed = false;
  readonly cache = new ReadCache(readCacheEntriesMax, readCacheValueBytesMax);
  readonly commitStats = new CommitStats();
  /** The group of the current event turn, closed by setImmediate once the turn is over. */
  private group: CommitGroup | undefined;

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
    this.logDb = new ReplicationLog(this.root, this.meta);
    // Stored values are readable by this user only, also in a data dir created before this rule.
    chmodSync(this.path, 0o700);
    for (const entry of readdirSync(this.path, { withFileTypes: true })) if (entry.isFile()) chmodSync(join(this.path, entry.name), 0o600);
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
   * Runs `body` in a write transaction and resolves with its result once that transaction is durable.
   * After the commit, the read snapshot is reset and the cached values of `touched` keys are dropped
   * (see forgetCommitted).
   *
   * The transaction promise resolves at commit, when the write is visible and survives a crash of this
   * process. With overlappingSync the fsync comes after; `flushed` resolves once everything committed so
   * far is on disk, which is when a write survives a crash of the machine. Acknowledge only then.
   */
  async durably<T>(body: () => T, touched?: readonly string[] | 'all', writes = 0): Promise<T> {
    const group = this.joinGroup(writes);
    const result = await this.root.transaction(body);
    if (touched !== undefined) this.forgetCommitted(touched);
    await this.root.flushed;
    if (!group.counted) {
      group.counted = true;
      if (group.writes > 0) {
        this.commitStats.seconds.observe((performance.now() - group.started) / 1000);
        this.commitStats.writes.observe(group.writes);
      }
    }
    return result;
  }

  /**
   * The commit group this turn's transactions share (lmdb-js's eventTurnBatching commits them as one),
   * counting `writes` mutations in it.
   */
  private joinGroup(writes: number): CommitGroup {
    let group = this.group;
    if (group === undefined) {
      group = { started: performance.now(), writes: 0, counted: false };
      this.group = group;
      setImmediate(() => (this.group = undefined));
    }
    group.writes += writes;
    return group;
  }

  /** Applies one mutation inside a write transaction; adds its cache id to `touched` for forgetCommitted(). */
  applyInTransaction(m: Mutation, touched: string[]): boolean {
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

  /** Writes a consistent copy of the whole environment into the new directory `dir` (as its data.mdb). */
  async backup(dir: string): Promise<void> {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    await this.root.backup(dir, false);
  }

  /** Number of keys held. */
  count(): number {
    return this.data.getCount();
  }

  /** Whether no key is stored: one cursor step, where count() walks every key. */
  isEmpty(): boolean {
    for (const _ of this.data.getKeys({ limit: 1 })) return false;
    return true;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.root.flushed;
    await this.root.close();
  }
}
