// How a starting primary decides from its replica's answer (planRecovery), as a table of situations.
// "new" is a primary data dir without a dataset; D is the dataset the primary serves, F a dataset that
// branched off D at seq 100 (a primary that served without confirming with its replica).
import { describe, expect, it } from 'vitest';
import { planRecovery, type PrimaryFacts } from '../../src/replication/primary-recovery.js';
import type { ReplicaStateReply } from '../../src/replication/replication-protocol.js';

const fresh: PrimaryFacts = { isNew: true, lastSeq: 0, datasetId: undefined, forkedFrom: undefined };
const onD = (lastSeq: number): PrimaryFacts => ({ isNew: false, lastSeq, datasetId: 'D', forkedFrom: undefined });
const onF = (lastSeq: number): PrimaryFacts => ({ isNew: false, lastSeq, datasetId: 'F', forkedFrom: { datasetId: 'D', seq: 100 } });
const replica = (datasetId: string | null, appliedSeq: number, keys: number, complete = datasetId !== null): ReplicaStateReply => ({
  datasetId,
  appliedSeq,
  keys,
  complete,
});

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
  ])('%s: %s', (_situation, primary, answer, action) => {
    expect(planRecovery(primary, answer).action).toBe(action);
  });

  it('says why it rebuilds, naming what each side holds', () => {
    const plan = planRecovery(onD(100), replica('D', 250, 200));
    expect(plan).toEqual({ action: 'rebuild', why: 'the replica holds this dataset further on (200 keys at seq 250) than this data dir (seq 100)' });
  });
});
