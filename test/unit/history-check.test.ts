// The fault run's history checker (src/harness/history-check.ts): a clean history passes every property,
// and each hand-made history that breaks one property is reported for that property and no other.
import { describe, expect, it } from 'vitest';
import { checkHistory, type History, type PropertyName, propertyLine, type WriteOp } from '../../src/harness/history-check.js';

const a = '127.0.0.1:8080';
const b = '127.0.0.1:8083';

/** An acknowledged write of shard1. */
function ok(key: string, value: string, member: string, epoch: number, invokedMs: number, ack: 'primary' | 'replica' = 'replica'): WriteOp {
  return { key, value, ack, invokedMs, completedMs: invokedMs + 5, outcome: 'ok', shard: 'shard1', member, epoch };
}

function history(writes: WriteOp[], finals: Record<string, string | undefined>, extra: Partial<History> = {}): History {
  return {
    writes,
    finalValues: new Map(Object.entries(finals)),
    rolledBack: [],
    dataDirLosses: [],
    replicasEqual: new Map([['shard1', true]]),
    ...extra,
  };
}

/** The properties a history breaks. */
function broken(h: History): PropertyName[] {
  return checkHistory(h)
    .filter((r) => r.violations.length > 0)
    .map((r) => r.property);
}

/** A failover from a (epoch 1) to b (epoch 2), with writes before and after. */
const clean = history(
  [
    ok('k1', 'v1', a, 1, 0),
    ok('k1', 'v2', a, 1, 10, 'primary'),
    { key: 'k1', value: 'v3', ack: 'replica', invokedMs: 20, completedMs: 5_020, outcome: 'unknown' },
    ok('k2', 'w1', a, 1, 30, 'primary'),
    ok('k2', 'w2', b, 2, 6_000),
    { key: 'k3', value: 'x1', ack: 'primary', invokedMs: 6_100, completedMs: 6_101, outcome: 'failed' },
  ],
  { k1: 'v3', k2: 'w2', k3: undefined },
);

describe('checkHistory', () => {
  it('passes a history that keeps every property, counting what it checked', () => {
    const results = checkHistory(clean);
    expect(broken(clean)).toEqual([]);
    expect(results.map(propertyLine)).toEqual([
      'replica-acked-readable: ok, 2 checked',
      'primary-acked-kept: ok, 2 checked',
      'one-writer-per-epoch: ok, 2 checked',
      'no-stale-epoch: ok, 4 checked',
      'replicas-equal: ok, 1 checked',
    ]);
  });

  it.each<[string, History, PropertyName[]]>([
    ['an ack=replica write read back as an older value', history([ok('k', 'v1', a, 1, 0), ok('k', 'v2', a, 1, 10)], { k: 'v1' }), ['replica-acked-readable']],
    ['an ack=replica write absent at the end', history([ok('k', 'v1', a, 1, 0)], { k: undefined }), ['replica-acked-readable']],
    ['an ack=primary write neither read back nor rolled back', history([ok('k', 'v1', a, 1, 0, 'primary')], { k: undefined }), ['primary-acked-kept']],
    [
      'two members acknowledging in one epoch (split brain)',
      history([ok('k1', 'v1', a, 1, 0), ok('k2', 'w1', b, 1, 10)], { k1: 'v1', k2: 'w1' }),
      ['one-writer-per-epoch'],
    ],
    [
      'the old primary acknowledging at epoch 1 after the new one acknowledged at epoch 2',
      history([ok('k1', 'v1', b, 2, 0), ok('k2', 'w1', a, 1, 100)], { k1: 'v1', k2: 'w1' }),
      ['no-stale-epoch'],
    ],
    ['a replica that differs from its primary', history([], {}, { replicasEqual: new Map([['shard1', false]]) }), ['replicas-equal']],
  ])('reports %s', (_name, h, expected) => {
    expect(broken(h)).toEqual(expected);
  });

  it('takes an ack=primary write found in a rollback file as kept', () => {
    const h = history([ok('k', 'v1', a, 1, 0, 'primary')], { k: undefined }, { rolledBack: [{ key: 'k', value: 'v1' }] });
    expect(broken(h)).toEqual([]);
  });

  it('counts an ack=primary write lost with its member data dir apart, not as a violation', () => {
    const h = history([ok('k', 'v1', a, 1, 0, 'primary')], { k: undefined }, { dataDirLosses: [{ member: a, atMs: 1_000 }] });
    const primary = checkHistory(h).find((r) => r.property === 'primary-acked-kept')!;
    expect(primary.violations).toEqual([]);
    expect(primary.excused).toBe(1);
    expect(propertyLine(primary)).toBe('primary-acked-kept: ok, 1 checked, 1 lost with a deleted data dir');
    // A data dir lost before the write was acknowledged excuses nothing.
    const before = history([ok('k', 'v1', a, 1, 2_000, 'primary')], { k: undefined }, { dataDirLosses: [{ member: a, atMs: 1_000 }] });
    expect(broken(before)).toEqual(['primary-acked-kept']);
  });

  it('does not take overlapping writes of two epochs for a stale acknowledgement', () => {
    // a's epoch-1 write began before b's epoch-2 write was acknowledged: no real-time order between them.
    const h = history([ok('k1', 'v1', b, 2, 0), { ...ok('k2', 'w1', a, 1, 3), completedMs: 50 }], { k1: 'v1', k2: 'w1' });
    expect(broken(h)).toEqual([]);
  });

  it('keeps the first 20 violations of a property and says there were more', () => {
    const writes = Array.from({ length: 30 }, (_, i) => ok(`k${i}`, 'v', a, 1, i));
    const replica = checkHistory(history(writes, {})).find((r) => r.property === 'replica-acked-readable')!;
    expect(replica.violations).toHaveLength(20);
    expect(propertyLine(replica)).toBe('replica-acked-readable: VIOLATED (20+), 30 checked');
  });
});
