// The store of one kvshard process: one LMDB environment with the shard's data, its metadata and the
// replication log. It is composed of parts that share the environment and each own their keys in it:
// the environment itself (environment.ts: databases, read cache, durable transactions), the standing
// (standing.ts: whether it serves as primary, and at which epoch, the one thing every write depends on),
// the dataset (dataset-store.ts: dataset ids, a replica's position and resync, a primary's rebuild),
// migrations (migration-store.ts: records and tombstones) and failover (failover-store.ts: epochs,
// grants, promotion and demotion). Snapshots and digests are read by snapshot.ts.

import { DatasetStore } from './dataset-store.js';
import { StoreEnvironment, type CommitStats, type StoreOptions } from './environment.js';
import { FailoverStore } from './failover-store.js';
import type { Mutation } from './keys.js';
import { MigrationStore } from './migration-store.js';
import { ReplicationLog } from './replication-log.js';
import { digestSlots, takeSnapshot, type SlotRangeDigest, type Snapshot } from './snapshot.js';
import { Standing } from './standing.js';

export type { StoreOptions } from './environment.js';

export interface CommitResult {
  /** Per mutation: for a set true, for a delete whether the key existed. */
  readonly applied: boolean[];
  /** The replication sequence of the last mutation. */
  readonly seq: number;
}

export class Store {
  private readonly env: StoreEnvironment;
  readonly standing: Standing;
  readonly dataset: DatasetStore;
  readonly migrations: MigrationStore;
  readonly failover: FailoverStore;

  constructor(options: StoreOptions) {
    this.env = new StoreEnvironment(options);
    // The role the process starts as, at an epoch the node's epochs settle before any write (failover.serveAs).
    this.standing = new Standing(options.replicationLog ? { role: 'primary', epoch: 1 } : { role: 'replica' }, this.env.logDb);
    this.dataset = new DatasetStore(this.env, this.standing);
    this.migrations = new MigrationStore(this.env, this.standing);
    this.failover = new FailoverStore(this.env, this.standing, this.dataset);
  }

  get path(): string {
    return this.env.path;
  }

  get commitStats(): CommitStats {
    return this.env.commitStats;
  }

  /** The replication log while this store serves as a primary; undefined while it serves as a replica. */
  get log(): ReplicationLog | undefined {
    return this.standing.log;
  }

  get(slot: number, key: Uint8Array): Buffer | undefined {
    return this.env.get(slot, key);
  }

  /**
   * Applies a primary's mutations atomically, in order, in one LMDB transaction together with their
   * replication log entries, and resolves once that transaction is durable on disk. lmdb-js groups every
   * transaction queued in the same event turn into one commit and one fsync, so concurrent clients share
   * the cost of a sync (group commit).
   *
   * `epoch` is the epoch the write was admitted at: the transaction stores nothing and the write is
   * refused (503 not_serving_primary) unless the store still serves as primary at that epoch when the
   * transaction runs (see Standing).
   */
  async commit(mutations: readonly Mutation[], epoch: number): Promise<CommitResult> {
    const touched: string[] = [];
    const result = await this.env.durably(
      () => {
        const log = this.standing.primaryLogInTransaction('write', epoch);
        if (!(log instanceof ReplicationLog)) return log;
        const ts = Date.now();
        let seq = 0;
        const applied = mutations.map((m) => {
          const done = this.env.applyInTransaction(m, touched);
          seq = log.appendInTransaction(m, ts);
          return done;
        });
        return { applied, seq };
      },
      touched,
      mutations.length,
    );
    if (result instanceof Error) throw result;
    return result;
  }

  /** A consistent snapshot of the data with the sequence it reflects. Call done() when finished. */
  snapshot(): Snapshot {
    return takeSnapshot({ root: this.env.root, data: this.env.data, meta: this.env.meta, log: this.log });
  }

  /**
   * Digests of the keys and values in `buckets` equal ranges of slots from `fromSlot` to `toSlot`, read
   * in one consistent snapshot. Equal digests mean equal data; a differing range can be narrowed further.
   */
  digest(fromSlot: number, toSlot: number, buckets: number): SlotRangeDigest[] {
    return digestSlots({ root: this.env.root, data: this.env.data, meta: this.env.meta, log: this.log }, fromSlot, toSlot, buckets);
  }

  /** Writes a consistent copy of the whole environment into the new directory `dir` (as its data.mdb). */
  backup(dir: string): Promise<void> {
    return this.env.backup(dir);
  }

  /** Number of keys held. */
  count(): number {
    return this.env.count();
  }

  /** Whether no key is stored: one cursor step, where count() walks every key. */
  isEmpty(): boolean {
    return this.env.isEmpty();
  }

  close(): Promise<void> {
    return this.env.close();
  }
}
