// How a starting primary decides from its replica's answer (planRecovery), as a table of situations.
// "new" is a primary data dir without a dataset; D is the dataset the primary serves, F a dataset that
// branched off D at seq 100 (a primary that served without confirming with its replica, or a replica
// promoted there). Each side's data was written at epoch 1 unless a row says otherwise; when the two
// histories have forked, the branch of the higher epoch wins whatever its length.
import { describe, expect, it } from 'vitest';
import { planRecovery, type PrimaryFacts } from '../../src/replication/recovery-plan.js';
import type { ReplicaStateReply } from '../../src/replication/replication-protocol.js';

const fresh: PrimaryFacts = { isNew: true, lastSeq: 0, datasetId: undefined, forkedFrom: undefined, datasetEpoch: 1 };
const onD = (lastSeq: number, datasetEpoch = 1): PrimaryFacts => ({ isNew: false, lastSeq, datasetId: 'D', forkedFrom: undefined, datasetEpoch });
const onF = (lastSeq: number, datasetEpoch = 1): PrimaryFacts => ({
  isNew: false,
  lastSeq,
  datasetId: 'F',
  forkedFrom: { datasetId: 'D', seq: 100 },
  datasetEpoch,
});
const replica = (datasetId: string | null, appliedSeq: number, keys: number, complete = datasetId !== null, datasetEpoch = 1): ReplicaStateReply => ({
  datasetId,
  appliedSeq,
  keys,
  complete,
  datasetEpoch,
});
/** A replica's answer at `datasetEpoch`. */
const replicaAt = (datasetEpoch: number, datasetId: string, appliedSeq: number, keys: number) => replica(datasetId, appliedSeq, keys, true, datasetEpoch);
/** A replica of an older build, which does not say its data's epoch. */
const replicaOfOldBuild = (datasetId: string, appliedSeq: number, keys: number): ReplicaStateReply => ({ datasetId, appliedSeq, keys, complete: true });

describe('planRecovery', () => {
  it.each([
    ['new primary, replica follows D', fresh, replica('D', 250, 200), 'rebuild'],
    ['new primary, replica follows D with no keys left', fresh, replica('D', 9, 0), 'rebuild'],
    ['new primary, replica mid-resync with keys', fresh, replica(null, 0, 40, false), 'rebuild'],
    ['new primary, replica holds nothing', fresh, replica(null, 0, 0), 'fresh'],
    ['D at 300, replica follows D at 250', onD(300), replica('D', 250, 200), 'serve'],
    ['D at 300, replica follows D at 300', onD(300), replica('D', 300, 200), 'serve'],
    ['D at 100, replica follows D at 250', onD(100), replica('D', 250, 200), 'rebuild'],
    ['D at 100, replica follows another dataset X at 250', onD(100), replica('X', 250, 200), 'rebuild'],
    ['D at 300, replica follows another dataset X at 250', onD(300), replica('X', 250, 200), 'serve'],
    ['D at 100, replica mid-resync', onD(100), replica(null, 0, 90, false), 'serve'],
    ['F at 180 (fork at 100), replica follows D at 90', onF(180), replica('D', 90, 80), 'serve'],
    ['F at 180 (fork at 100), replica follows D at 100', onF(180), replica('D', 100, 80), 'serve'],
    ['F at 100 (fork at 100, nothing written since), replica follows D at 250', onF(100), replica('D', 250, 200), 'rebuild'],
    ['F at 180 (fork at 100), replica follows D at 250', onF(180), replica('D', 250, 200), 'diverged'],
    ['F at 180, replica follows F at 150', onF(180), replica('F', 150, 120), 'serve'],
    // Equal epochs, or a replica that does not say its own: sequences decide, as in the rows above.
    ['D at 100 (epoch 2), replica follows another dataset X at 250 (epoch 2)', onD(100, 2), replicaAt(2, 'X', 250, 200), 'rebuild'],
    ['F at 180 (fork at 100, epoch 2), replica follows D at 250 (epoch 2)', onF(180, 2), replicaAt(2, 'D', 250, 200), 'diverged'],
    ['D at 100 (epoch 2), an older replica follows another dataset X at 250', onD(100, 2), replicaOfOldBuild('X', 250, 200), 'rebuild'],
    // Forked histories of different epochs: the higher epoch's branch wins, whatever its length.
    ['D at 103 (epoch 2), replica follows another dataset X at 108 (epoch 1)', onD(103, 2), replicaAt(1, 'X', 108, 90), 'serve'],
    ['F at 180 (fork at 100, epoch 2), replica follows D at 250 (epoch 1)', onF(180, 2), replicaAt(1, 'D', 250, 200), 'serve'],
    ['F at 180 (fork at 100, epoch 1), replica follows D at 150 (epoch 2)', onF(180, 1), replicaAt(2, 'D', 150, 120), 'rebuild'],
    ['D at 300 (epoch 1), replica follows another dataset X at 250 (epoch 3)', onD(300, 1), replicaAt(3, 'X', 250, 200), 'rebuild'],
    // One history, not a fork: the same dataset further on, or a branch with nothing written since it.
    ['D at 100 (epoch 3), replica follows D at 250 (epoch 1)', onD(100, 3), replicaAt(1, 'D', 250, 200), 'rebuild'],
    ['F at 100 (fork at 100, nothing written since, epoch 2), replica follows D at 250 (epoch 1)', onF(100, 2), replicaAt(1, 'D', 250, 200), 'rebuild'],
  ])('%s: %s', (_situation, primary, answer, action) => {
    expect(planRecovery(primary, answer).action).toBe(action);
  });

  it("rolls back this primary's writes past the fork when the replica's branch is of a higher epoch", () => {
    expect(planRecovery(onF(180, 1), replicaAt(2, 'D', 150, 120))).toMatchObject({ action: 'rebuild', rollBackPast: 100 });
    // Of an unrelated dataset, no fork point is known: everything this primary's log holds goes to the file.
    expect(planRecovery(onD(300, 1), replicaAt(3, 'X', 250, 200))).toMatchObject({ action: 'rebuild', rollBackPast: 0 });
    // A rebuild by sequence, with no fork between the two, rolls nothing back.
    expect(planRecovery(onD(100), replica('D', 250, 200))).not.toHaveProperty('rollBackPast');
  });

  it('says which branch won and why when it serves over a replica of a lower epoch', () => {
    expect(planRecovery(onD(103, 2), replicaAt(1, 'X', 108, 90))).toEqual({
      action: 'serve',
      why: "this data dir's history (seq 103, epoch 2) and the replica's (dataset X at seq 108, epoch 1) have forked: this one, of the higher epoch, wins",
    });
  });

  it('says why it rebuilds, naming what each side holds', () => {
    const plan = planRecovery(onD(100), replica('D', 250, 200));
    expect(plan).toEqual({ action: 'rebuild', why: 'the replica holds this dataset further on (200 keys at seq 250) than this data dir (seq 100)' });
  });
});
