// The store's part that a failover changes: the epochs it knows (kept durably, so a restarted node
// knows who was primary), a replica's promotion (its data becomes a primary dataset that branches off
// the old primary's at the sequence it had applied) and a primary's demotion (it follows the new primary
// from where its own log ends). A demoted primary keeps its log until the new primary's data replaces its
// own: the writes past the branch point are what goes to its rollback file.

import { randomUUID } from 'node:crypto';
import {
  appliedSeqKey,
  datasetEpochKey,
  datasetIdKey,
  demotedKey,
  forkedFromKey,
  overwriteReplicaKey,
  replicaDatasetKey,
  resyncIdKey,
  type ForkPoint,
} from './dataset-store.js';
import type { LogEntry } from './replication-log.js';
import type { DatasetStore } from './dataset-store.js';
import type { StoreEnvironment } from './environment.js';
import type { Serving, Standing } from './standing.js';

const epochsKey = 'epochs';
/** The promotion grants this node stored (cluster/grants.ts), by shard. */
const grantsKey = 'failover.grants';
/** Present (false) while this data dir's epochs are its initial ones, not yet confirmed by a majority. */
const epochsKnownKey = 'failover.epochsKnown';
/** A switchover pause this primary answered and has not yet learned the outcome of (node/failover.ts). */
const pauseKey = 'failover.pause';
const rollbacksKey = 'failover.rollbacks';
/** Which role the store was last made to serve by a promotion or demotion; unset before the first failover. */
const servesAsKey = 'failover.servesAs';
/** With a coordinator: the etcd lease this member last held, so that a restart can keep it (and its key). */
const leaseKey = 'coordinator.lease';

/** With a coordinator: the etcd lease a member took, as which member and shard, under which prefix, on which running kernel (boot id). */
export interface SavedLease {
  readonly id: string;
  readonly member: string;
  readonly shard: string;
  readonly prefix: string;
  readonly boot: string;
}

/** The rollback files this member wrote (see replication/rollback.ts), counted for /status. */
export interface RollbackSummary {
  readonly files: number;
  readonly entries: number;
  readonly last: { readonly file: string; readonly entries: number; readonly at: string } | null;
}

/** Where a demoted primary's history stood: its dataset and the last sequence it wrote. */
export interface DemotedAt {
  readonly datasetId: string;
  readonly seq: number;
  /** The rollback file of the writes past the successor's branch point, once written. */
  readonly rollback?: string;
}

export class FailoverStore {
  constructor(
    private readonly env: StoreEnvironment,
    private readonly standing: Standing,
    private readonly dataset: DatasetStore,
  ) {}

  /** The epochs this node knows, by shard, as last stored; undefined on a node that never stored any. */
  epochs<T>(): Readonly<Record<string, T>> | undefined {
    return this.env.meta.get(epochsKey) as Record<string, T> | undefined;
  }

  /** Stores the epochs; `known` false (a new data dir) until a majority has told this node them. */
  async recordEpochs<T>(table: Readonly<Record<string, T>>, known?: boolean): Promise<void> {
    await this.env.durably(() => {
      this.env.meta.putSync(epochsKey, table);
      if (known === false) this.env.meta.putSync(epochsKnownKey, false);
    });
  }

  /** Whether the stored epochs were confirmed by a majority (data dirs from before this record count as known). */
  epochsKnown(): boolean {
    return this.env.meta.get(epochsKnownKey) !== false;
  }

  /** Notes that a majority confirmed the stored epochs. */
  async recordEpochsKnown(): Promise<void> {
    await this.env.durably(() => this.env.meta.removeSync(epochsKnownKey));
  }

  /**
   * Makes this replica's store a primary's: a new dataset that branches off the one it followed at the
   * sequence it applied (so the old primary, as its replica, follows on without a resync when it holds no
   * more than that), with the log continuing from there. Returns the branch point.
   *
   * `epoch` is the epoch this member is primary at: the new dataset is written at it, and a branch of a
   * lower epoch yields to it (see planRecovery). The store serves as primary at it from this
   * transaction on (see Standing).
   */
  async promote(epoch: number): Promise<ForkPoint> {
    const log = this.env.logDb;
    return this.env.durably(() => {
      this.env.meta.putSync(datasetEpochKey, epoch);
      const state = this.dataset.replicaState();
      const point: ForkPoint = { datasetId: state.datasetId ?? randomUUID(), seq: state.appliedSeq };
      this.env.meta.putSync(datasetIdKey, randomUUID());
      this.env.meta.putSync(forkedFromKey, point);
      this.env.meta.removeSync(overwriteReplicaKey);
      this.env.meta.removeSync(replicaDatasetKey);
      this.env.meta.removeSync(appliedSeqKey);
      this.env.meta.removeSync(resyncIdKey);
      this.env.meta.removeSync(demotedKey);
      this.env.meta.putSync(servesAsKey, 'primary');
      log.resetInTransaction(point.seq);
      this.standing.setInTransaction({ role: 'primary', epoch });
      return point;
    });
  }

  /**
   * A primary learned that its shard's epoch rose to `epoch` and still names it: it serves at that epoch
   * from this transaction on, and what it writes from now on is data of that epoch.
   */
  async raise(epoch: number): Promise<void> {
    await this.env.durably(() => {
      this.dataset.raiseDatasetEpochInTransaction(epoch);
      if (this.standing.now.role === 'primary') this.standing.setInTransaction({ role: 'primary', epoch });
    });
  }

  /**
   * Makes this primary's store a replica's that follows its own dataset from the end of its log: the new
   * primary's dataset branched off it, so batches from the branch point on apply here. Its log stays,
   * for the rollback of writes past the branch point, until a resync replaces the data. The store serves
   * as a replica from this transaction on (see Standing): writes queued before it commit first and are
   * logged, so the sequence recorded here covers them; writes queued after it are refused.
   */
  async demote(): Promise<DemotedAt> {
    const log = this.env.logDb;
    const at = await this.env.durably(() => {
      const demoted: DemotedAt = { datasetId: (this.env.meta.get(datasetIdKey) as string | undefined) ?? randomUUID(), seq: log.lastSeq() };
      this.env.meta.putSync(replicaDatasetKey, demoted.datasetId);
      this.env.meta.putSync(appliedSeqKey, demoted.seq);
      this.env.meta.removeSync(resyncIdKey);
      this.env.meta.putSync(demotedKey, demoted);
      this.env.meta.putSync(servesAsKey, 'replica');
      this.standing.setInTransaction({ role: 'replica' });
      return demoted;
    });
    this.dataset.markComplete();
    return at;
  }

  /** The role the last promotion or demotion made this store serve; undefined before any. */
  servesAs(): 'primary' | 'replica' | undefined {
    return this.env.meta.get(servesAsKey) as 'primary' | 'replica' | undefined;
  }

  /** At start-up, before any write: what the store serves as, as the node's epochs say. */
  serveAs(serving: Serving): void {
    this.standing.setInTransaction(serving);
  }

  /** Where this store's history stood when it was demoted from primary, until a resync replaced its data. */
  demotedAt(): DemotedAt | undefined {
    return this.env.meta.get(demotedKey) as DemotedAt | undefined;
  }

  /**
   * The writes this demoted primary made past `seq` (the new primary's branch point), as far as its log
   * still holds them, in order, at most `entriesMax` from `fromSeq` on.
   */
  writesPast(fromSeq: number, entriesMax: number): LogEntry[] {
    return this.env.logDb.read(fromSeq, entriesMax, Number.MAX_SAFE_INTEGER);
  }

  /** The oldest sequence the log still holds. */
  logFirstSeq(): number {
    return this.env.logDb.firstSeq();
  }

  /** Notes that the demoted history's rollback file is written, so a resync that restarts does not write it twice. */
  async markRolledBack(file: string): Promise<void> {
    await this.env.durably(() => {
      const demoted = this.demotedAt();
      if (demoted) this.env.meta.putSync(demotedKey, { ...demoted, rollback: file });
    });
  }

  /** The rollback files written here so far. */
  rollbacks(): RollbackSummary {
    return (this.env.meta.get(rollbacksKey) as RollbackSummary | undefined) ?? { files: 0, entries: 0, last: null };
  }

  /** Counts a rollback file once it is on disk, before the resync that replaces the data starts. */
  async recordRollback(file: string, entries: number): Promise<void> {
    const before = this.rollbacks();
    const summary: RollbackSummary = { files: before.files + 1, entries: before.entries + entries, last: { file, entries, at: new Date().toISOString() } };
    await this.env.durably(() => this.env.meta.putSync(rollbacksKey, summary));
  }

  /** The promotion grants this node stored, by shard (see cluster/grants.ts). */
  grants<T>(): Readonly<Record<string, T>> {
    return (this.env.meta.get(grantsKey) as Record<string, T> | undefined) ?? {};
  }

  /** Stores a grant, synced, before the node answers that it granted. */
  async recordGrant<T>(shard: string, grant: T): Promise<void> {
    await this.env.durably(() => this.env.meta.putSync(grantsKey, { ...this.grants<T>(), [shard]: grant }));
  }

  /** The switchover pause this primary answered, until it learns the outcome. */
  switchoverPause<T>(): T | undefined {
    return this.env.meta.get(pauseKey) as T | undefined;
  }

  /**
   * Records (or with undefined, clears) a switchover pause, synced. Commits are ordered, so once the
   * record is durable every write admitted before it is too.
   */
  async recordSwitchoverPause<T>(pause: T | undefined): Promise<void> {
    await this.env.durably(() => (pause === undefined ? this.env.meta.removeSync(pauseKey) : this.env.meta.putSync(pauseKey, pause)));
  }

  /** The etcd lease this member last took, and as whom. */
  coordinatorLease(): SavedLease | undefined {
    return this.env.meta.get(leaseKey) as SavedLease | undefined;
  }

  async recordCoordinatorLease(lease: SavedLease): Promise<void> {
    await this.env.durably(() => this.env.meta.putSync(leaseKey, lease));
  }
}
