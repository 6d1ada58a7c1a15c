// The store's part that says which dataset it holds and how it is replaced: a primary's dataset id, its
// fork point and an overwrite of its replica; a replica's position in its primary's dataset and its full
// resync; a primary's rebuild from its replica. All of it lives in the meta database beside the data,
// written in the same durable transactions as the data it describes.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { StoreEnvironment } from './environment.js';
import type { Standing } from './standing.js';
import type { LogEntry } from './replication-log.js';
import { withLayoutIds } from './keys.js';

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

/** Meta keys of the dataset; snapshot.ts reads them in its own read transaction. */
export const datasetIdKey = 'datasetId';
export const appliedSeqKey = 'replica.appliedSeq';
export const replicaDatasetKey = 'replica.datasetId';
export const resyncIdKey = 'replica.resyncId';
const primaryMigratingKey = 'replica.primaryMigrating';
/** Set on a primary started to overwrite its replica: the dataset id whose resync the replica must accept. */
export const overwriteReplicaKey = 'primary.overwriteReplica';
/** Set on a primary that serves a dataset forked from another (see forkDataset), until its replica follows it. */
export const forkedFromKey = 'primary.forkedFrom';
/** Set on a primary demoted by a failover: where its history stood (see failover-store.ts). */
export const demotedKey = 'failover.demoted';
/** The highest epoch at which the data held here was written (see datasetEpoch). */
export const datasetEpochKey = 'dataset.epoch';

/**
 * Where a primary's dataset branched off the dataset before it: up to `seq` the two histories are the
 * same. A replica of the old dataset at or below `seq` can follow the new one without a resync; one
 * further on holds writes the primary lacks.
 */
export interface ForkPoint {
  readonly datasetId: string;
  readonly seq: number;
}

/** A replica's memory of its primary's migrating flag, and the layout the primary ran when it said so. */
interface PrimaryMigrating {
  readonly layoutId: string;
  readonly migrating: boolean;
}

export class DatasetStore {
  /** A replica's data is complete (it follows a dataset and no resync is under way); cached for reads. */
  private complete: boolean;

  constructor(
    private readonly env: StoreEnvironment,
    private readonly standing: Standing,
  ) {
    this.complete = isComplete(this.replicaState());
  }

  /**
   * Whether this primary data dir holds no dataset yet: it is new, or a rebuild from the replica was cut
   * off. Such a primary must learn from its replica whether the shard has data before it serves.
   */
  isNewPrimary(): boolean {
    return this.env.meta.get(datasetIdKey) === undefined;
  }

  /** Starts a new, empty primary dataset (a new shard). */
  async startDataset(): Promise<void> {
    await this.env.durably(() => {
      if (this.env.meta.get(datasetIdKey) === undefined) this.env.meta.putSync(datasetIdKey, randomUUID());
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
    const log = this.standing.log!;
    return this.env.durably(() => {
      const fork = (this.env.meta.get(forkedFromKey) as ForkPoint | undefined) ?? { datasetId: this.env.meta.get(datasetIdKey) as string, seq: log.lastSeq() };
      this.env.meta.putSync(forkedFromKey, fork);
      this.env.meta.putSync(datasetIdKey, randomUUID());
      return fork;
    });
  }

  /** Where this primary's dataset branched off, while its replica has not yet followed it. */
  forkedFrom(): ForkPoint | undefined {
    return this.env.meta.get(forkedFromKey) as ForkPoint | undefined;
  }

  /**
   * A deliberate fresh start or restore (--overwrite-replica): a new dataset id, unrelated to the one the
   * replica follows, and a mark that makes the replica accept it even where its history is longer.
   */
  async startOverwrite(): Promise<void> {
    await this.env.durably(() => {
      const id = randomUUID();
      this.env.meta.putSync(datasetIdKey, id);
      this.env.meta.removeSync(forkedFromKey);
      this.env.meta.putSync(overwriteReplicaKey, id);
    });
  }

  /** Whether this primary was started to overwrite its replica's data (until the replica follows it). */
  overwritesReplica(): boolean {
    const marked = this.env.meta.get(overwriteReplicaKey);
    return marked !== undefined && marked === this.env.meta.get(datasetIdKey);
  }

  /** The replica follows this primary's dataset: a fork point or an overwrite is settled. */
  async replicaFollows(): Promise<void> {
    if (this.env.meta.get(forkedFromKey) === undefined && this.env.meta.get(overwriteReplicaKey) === undefined) return;
    await this.env.durably(() => {
      this.env.meta.removeSync(forkedFromKey);
      this.env.meta.removeSync(overwriteReplicaKey);
    });
  }

  /** A primary demoted to replica holds a complete copy: its own dataset, up to its log's end. */
  markComplete(): void {
    this.complete = true;
  }

  /** Whether a replica holds a complete copy of some primary dataset (false before its first resync ends). */
  replicaComplete(): boolean {
    return this.complete;
  }

  /** The id of this primary's dataset (like Redis's replication id). */
  datasetId(): string {
    const id = this.env.meta.get(datasetIdKey) as string | undefined;
    assert.ok(id !== undefined, 'a primary replicates only once it has a dataset');
    return id;
  }

  /**
   * What a replica last heard from its primary under layout `layoutId`: whether keys may still be
   * moving to it. Undefined when it heard nothing under that layout: a flag heard under another layout
   * (or kept by a build that did not record the layout) says nothing about which keys move now.
   */
  primaryMigrating(layoutId: string): boolean | undefined {
    const heard = withLayoutIds(this.env.meta.get(primaryMigratingKey)) as PrimaryMigrating | boolean | undefined;
    return typeof heard === 'object' && heard.layoutId === layoutId ? heard.migrating : undefined;
  }

  /** Remembers the primary's migrating flag with its layout, so a replica restarted while its primary is down knows it. */
  async notePrimaryMigrating(layoutId: string, migrating: boolean): Promise<void> {
    if (this.primaryMigrating(layoutId) !== migrating) await this.env.meta.put(primaryMigratingKey, { layoutId, migrating } satisfies PrimaryMigrating);
  }

  /**
   * The highest epoch at which the data this store holds was written: on a primary, the epoch it was
   * promoted at; on a replica, the highest epoch of a primary whose batches or resync it took. When two
   * members' histories have forked, the branch of the higher epoch is the shard's (see planRecovery).
   * A store that never recorded one holds data of the initial epoch, 1 (or of a build that kept none).
   */
  datasetEpoch(): number {
    return (this.env.meta.get(datasetEpochKey) as number | undefined) ?? 1;
  }

  /** Inside a write transaction: raises the data's epoch to `epoch` (a primary at that epoch wrote what is held). */
  raiseDatasetEpochInTransaction(epoch: number | undefined): void {
    if (epoch !== undefined && epoch > this.datasetEpoch()) this.env.meta.putSync(datasetEpochKey, epoch);
  }

  replicaState(): ReplicaState {
    return {
      datasetId: this.env.meta.get(replicaDatasetKey) as string | undefined,
      appliedSeq: (this.env.meta.get(appliedSeqKey) as number | undefined) ?? 0,
      resyncId: this.env.meta.get(resyncIdKey) as string | undefined,
    };
  }

  /**
   * Applies a batch of the primary's log on a replica, in one transaction together with the new applied
   * sequence, and resolves once durable. Entries already applied are skipped; a batch that starts past
   * the next expected sequence is refused as a gap; a batch from another dataset, or one arriving while
   * the data is incomplete (resync under way), asks for a resync. `entries` must be contiguous. A batch
   * taken from a primary at `epoch` raises the data's epoch to it: what is held here is a prefix of
   * that primary's history.
   */
  async applyReplicated(datasetId: string, entries: readonly LogEntry[], forkedFrom: ForkPoint | null, epoch?: number): Promise<ApplyOutcome> {
    const touched: string[] = [];
    return this.env.durably(
      (): ApplyOutcome => {
        const state = this.replicaState();
        if (state.resyncId !== undefined) return { ok: false, reason: 'resync_needed', appliedSeq: state.appliedSeq };
        if (state.datasetId !== datasetId) {
          // The primary's dataset branched off the one followed here at a point this replica has not passed:
          // its history up to here is the same, so it follows the new dataset from where it stands (Redis's
          // second replication id).
          const follows = forkedFrom !== null && state.datasetId === forkedFrom.datasetId && state.appliedSeq <= forkedFrom.seq;
          if (!follows) return { ok: false, reason: 'resync_needed', appliedSeq: state.appliedSeq };
          this.env.meta.putSync(replicaDatasetKey, datasetId);
          // A demoted primary that follows its successor from where it stopped has nothing to roll back.
          this.env.meta.removeSync(demotedKey);
        }
        const fresh = entries.filter((e) => e.seq > state.appliedSeq);
        if (fresh.length > 0 && fresh[0]!.seq !== state.appliedSeq + 1) return { ok: false, reason: 'gap', appliedSeq: state.appliedSeq };
        this.raiseDatasetEpochInTransaction(epoch);
        if (fresh.length === 0) return { ok: true, appliedSeq: state.appliedSeq };
        fresh.forEach((e, i) => {
          assert.equal(e.seq, state.appliedSeq + 1 + i, 'replicated batch is not contiguous');
          this.env.applyInTransaction(e.type === 'set' ? { ...e, type: 'set', value: e.value! } : { ...e, type: 'delete' }, touched);
        });
        const appliedSeq = state.appliedSeq + fresh.length;
        this.env.meta.putSync(appliedSeqKey, appliedSeq);
        return { ok: true, appliedSeq };
      },
      touched,
      entries.length,
    );
  }

  /** Starts a full resync on a replica: drops all data and marks it incomplete until endResync(). */
  async beginResync(resyncId: string): Promise<void> {
    this.complete = false;
    await this.env.durably(() => {
      this.env.cache.clear();
      this.env.data.clearSync();
      this.env.meta.putSync(resyncIdKey, resyncId);
      this.env.meta.removeSync(replicaDatasetKey);
      this.env.meta.putSync(appliedSeqKey, 0);
    }, 'all');
  }

  /** Stores one snapshot chunk of a resync. Refused (false) when `resyncId` is not the resync under way. */
  async applyResyncChunk(resyncId: string, pairs: readonly [Buffer, Buffer][]): Promise<boolean> {
    const ok = await this.env.durably(() => {
      if (this.env.meta.get(resyncIdKey) !== resyncId) return false;
      this.env.cache.clear();
      for (const [key, value] of pairs) this.env.data.putSync(key, value);
      return true;
    }, 'all');
    return ok;
  }

  /**
   * Ends a resync: the replica now holds the primary's snapshot at `snapshotSeq` of dataset `datasetId`,
   * written at the primary's `epoch` (unknown from a primary that sent none: the data's epoch is then the
   * initial one). Refused (false) when another resync took over or the key count does not match the snapshot's.
   */
  async endResync(resyncId: string, datasetId: string, snapshotSeq: number, keyCount: number, epoch?: number): Promise<boolean> {
    const ok = await this.env.durably(() => {
      if (this.env.meta.get(resyncIdKey) !== resyncId || this.env.data.getCount() !== keyCount) return false;
      this.env.meta.removeSync(resyncIdKey);
      // The data held before is gone: its epoch goes with it.
      if (epoch === undefined) this.env.meta.removeSync(datasetEpochKey);
      else this.env.meta.putSync(datasetEpochKey, epoch);
      this.env.meta.putSync(replicaDatasetKey, datasetId);
      this.env.meta.putSync(appliedSeqKey, snapshotSeq);
      // A demoted primary's own history is gone now: its log (kept for the rollback) goes too.
      if (this.env.meta.get(demotedKey) !== undefined) {
        this.env.meta.removeSync(demotedKey);
        this.env.logDb.resetInTransaction(0);
      }
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
    assert.ok(this.standing.log, 'only a primary rebuilds from its replica');
    const log = this.standing.log;
    await this.env.durably(() => {
      this.env.cache.clear();
      this.env.data.clearSync();
      this.env.meta.removeSync(datasetIdKey);
      this.env.meta.removeSync(overwriteReplicaKey);
      this.env.meta.removeSync(forkedFromKey);
      log.resetInTransaction(0);
    }, 'all');
  }

  /** Stores one chunk of the replica's snapshot during a rebuild. */
  async applyRebuildChunk(pairs: readonly [Buffer, Buffer][]): Promise<void> {
    await this.env.durably(() => {
      this.env.cache.clear();
      for (const [key, value] of pairs) this.env.data.putSync(key, value);
    }, 'all');
  }

  /**
   * Ends a rebuild: the primary now holds the replica's snapshot. With `datasetId` it continues that
   * dataset at `seq`, so the replica goes on streaming without a resync; without it (the replica's
   * copy was partial) it starts a new dataset. `epoch` is the epoch the replica's data was written at,
   * which the data's epoch here is raised to. False when the key count does not match the snapshot's.
   */
  async endRebuild(datasetId: string | undefined, seq: number, keyCount: number, epoch?: number): Promise<boolean> {
    assert.ok(this.standing.log, 'only a primary rebuilds from its replica');
    const log = this.standing.log;
    return this.env.durably(() => {
      if (this.env.data.getCount() !== keyCount) return false;
      this.raiseDatasetEpochInTransaction(epoch);
      log.resetInTransaction(datasetId === undefined ? 0 : seq);
      this.env.meta.putSync(datasetIdKey, datasetId ?? randomUUID());
      return true;
    });
  }
}
