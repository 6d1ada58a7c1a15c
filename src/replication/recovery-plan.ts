// What a starting primary does with its shard's data, decided from what it holds and what its replica
// answers. The decision is pure, so its unit test needs nothing but the two sides' facts;
// PrimaryRecovery (primary-recovery.ts) asks the replica and carries the plan out.
//
// A new data dir rebuilds from whatever the replica holds, and starts an empty dataset when the replica
// holds nothing. A primary with data serves it while the replica holds a partial copy or is not ahead;
// when the replica's history extends this one's (the same dataset further on, or the dataset this one
// branched off, further on with nothing written here since), it rebuilds from the replica.
//
// When the two histories have forked, sequences do not say which is the shard's: the epochs do. Each
// store knows the highest epoch its data was written at; the branch of the higher epoch wins, whatever
// its length. A plan that rebuilds over this primary's branch names the sequence past which its writes
// go to a rollback file first; the replica's go to one when it takes this primary's resync. At equal
// epochs (or from a replica that does not say its epoch) the longer history wins, except when both
// branches hold writes past a known fork point: neither copy then has all of them, and the plan says
// so (diverged) instead of choosing.

import type { ForkPoint } from '../storage/dataset-store.js';
import type { ReplicaStateReply } from './replication-protocol.js';

/** What the primary knows of its own data when it starts. */
export interface PrimaryFacts {
  /** No dataset yet: a new data dir, or a rebuild that was cut off. */
  readonly isNew: boolean;
  readonly lastSeq: number;
  readonly datasetId: string | undefined;
  /** Where its dataset branched off the one before, while the replica has not followed it. */
  readonly forkedFrom: ForkPoint | undefined;
  /** The highest epoch its data was written at (see DatasetStore.datasetEpoch). */
  readonly datasetEpoch: number;
}

export type RecoveryPlan =
  | { readonly action: 'fresh' }
  /** With `why`: the replica's history forked from this one at a lower epoch, and yields to it. */
  | { readonly action: 'serve'; readonly why?: string }
  /**
   * With `rollBackPast`: the histories forked and the replica's is of a higher epoch; this primary's
   * writes past that sequence (the fork, or 0 when it is not known) go to a rollback file first.
   */
  | { readonly action: 'rebuild'; readonly why: string; readonly rollBackPast?: number }
  | { readonly action: 'diverged'; readonly why: string };

/**
 * When the primary's and the replica's histories have forked (another dataset, not one that extends the
 * other's prefix) and their epochs differ, the higher epoch's branch wins whatever its length. Undefined
 * when the epochs are equal or the replica does not say its own: then sequences decide, as before epochs.
 */
function byEpoch(primary: PrimaryFacts, replica: ReplicaStateReply, forkSeq: number | undefined): RecoveryPlan | undefined {
  const theirs = replica.datasetEpoch;
  if (theirs === undefined || theirs === primary.datasetEpoch) return undefined;
  const sides = `this data dir's history (seq ${primary.lastSeq}, epoch ${primary.datasetEpoch}) and the replica's (dataset ${replica.datasetId} at seq ${replica.appliedSeq}, epoch ${theirs}) have forked`;
  if (theirs < primary.datasetEpoch) return { action: 'serve', why: `${sides}: this one, of the higher epoch, wins` };
  return { action: 'rebuild', why: `${sides}: the replica's, of the higher epoch, wins`, rollBackPast: forkSeq ?? 0 };
}

/** Decides from the replica's answer how the primary starts. Pure. */
export function planRecovery(primary: PrimaryFacts, replica: ReplicaStateReply): RecoveryPlan {
  const held = `${replica.keys} keys at seq ${replica.appliedSeq}`;
  if (primary.isNew) {
    if (replica.complete) return { action: 'rebuild', why: `this data dir is new and the replica holds dataset ${replica.datasetId} (${held})` };
    if (replica.keys > 0) return { action: 'rebuild', why: `this data dir is new and the replica holds ${replica.keys} keys of an unfinished resync` };
    return { action: 'fresh' };
  }
  if (!replica.complete) return { action: 'serve' };
  const here = `this data dir (seq ${primary.lastSeq})`;
  if (replica.datasetId === primary.datasetId) {
    // The same dataset: the replica's history extends this one's, so copying it loses nothing.
    return replica.appliedSeq > primary.lastSeq
      ? { action: 'rebuild', why: `the replica holds this dataset further on (${held}) than ${here}` }
      : { action: 'serve' };
  }
  const fork = primary.forkedFrom;
  if (fork !== undefined && replica.datasetId === fork.datasetId) {
    // This dataset branched off the replica's at fork.seq. Not past it, the replica follows from where it stands.
    if (replica.appliedSeq <= fork.seq) return { action: 'serve' };
    if (primary.lastSeq === fork.seq) {
      return { action: 'rebuild', why: `the replica holds the dataset this one branched off further on (${held}), and nothing was written here since` };
    }
    const decided = byEpoch(primary, replica, fork.seq);
    if (decided) return decided;
    return {
      action: 'diverged',
      why:
        `the replica holds writes of dataset ${fork.datasetId} past seq ${fork.seq} (${held}), and this data dir holds writes of its own ` +
        `past that point (seq ${primary.lastSeq}): neither copy has all of them`,
    };
  }
  return (
    byEpoch(primary, replica, undefined) ??
    (replica.appliedSeq > primary.lastSeq
      ? { action: 'rebuild', why: `the replica holds dataset ${replica.datasetId}, not this one's ${primary.datasetId}, further on (${held}) than ${here}` }
      : { action: 'serve' })
  );
}
