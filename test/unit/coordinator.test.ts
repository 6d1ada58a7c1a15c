// The coordinator's pure decisions (cluster/coordinator.ts): which epoch a campaign takes and what its
// transaction compares, how a lost campaign reads back, and when a primary's lease is surely alive.
import { describe, expect, it } from 'vitest';
import { campaign, campaignOutcome, decodeCounter, decodeHolder, leaseHolds, leaseMarginMs, shardKeys } from '../../src/cluster/coordinator.js';

const keys = shardKeys('/kvshard/test', 'shard1');
const kv = (value: string, modRevision = 5) => ({ key: 'k', value, createRevision: 3, modRevision, lease: '0' });

describe('campaign', () => {
  const rows = [
    { name: 'a new shard: the counter is absent, the member knows epoch 1', known: 1, counter: { epoch: 0, modRevision: 0 }, epoch: 2 },
    { name: 'the counter is ahead of what the member knows', known: 2, counter: { epoch: 6, modRevision: 9 }, epoch: 7 },
    { name: "etcd's data was lost: the member's epoch is ahead, and the counter is raised past it", known: 8, counter: { epoch: 0, modRevision: 0 }, epoch: 9 },
  ];
  for (const row of rows) {
    it(`takes the next epoch above both: ${row.name}`, () => {
      const attempt = campaign(keys, '127.0.0.1:7001', row.known, row.counter, '42');
      expect(attempt.epoch).toBe(row.epoch);
      expect(attempt.txn.compare).toEqual([
        { key: keys.primary, target: 'CREATE', revision: 0 },
        { key: keys.epoch, target: 'MOD', revision: row.counter.modRevision },
      ]);
      expect(attempt.txn.success).toEqual([
        { put: keys.primary, value: JSON.stringify({ member: '127.0.0.1:7001', epoch: row.epoch }), lease: '42' },
        { put: keys.epoch, value: String(row.epoch) },
      ]);
    });
  }

  it("replaces a switchover's paused primary only while its key is still the revision read", () => {
    const attempt = campaign(keys, '127.0.0.1:7002', 3, { epoch: 3, modRevision: 4 }, '43', 11);
    expect(attempt.epoch).toBe(4);
    expect(attempt.txn.compare[0]).toEqual({ key: keys.primary, target: 'MOD', revision: 11 });
  });

  it('reads the holder and the counter back when it loses', () => {
    const attempt = campaign(keys, '127.0.0.1:7002', 2, { epoch: 2, modRevision: 4 }, '43');
    const lost = campaignOutcome(attempt, { succeeded: false, revision: 9, ranges: [[kv('{"member":"127.0.0.1:7001","epoch":3}')], [kv('3', 8)]] });
    expect(lost).toEqual({ won: false, holder: { member: '127.0.0.1:7001', epoch: 3 }, counter: { epoch: 3, modRevision: 8 } });
    expect(campaignOutcome(attempt, { succeeded: true, revision: 9, ranges: [] })).toEqual({ won: true, epoch: 3 });
  });

  it('takes a malformed holder or counter for none', () => {
    expect(decodeHolder(kv('not json'))).toBeUndefined();
    expect(decodeHolder(kv('{"member":"a","epoch":0}'))).toBeUndefined();
    expect(decodeCounter(kv('-3', 7))).toEqual({ epoch: 0, modRevision: 7 });
    expect(decodeCounter(undefined)).toEqual({ epoch: 0, modRevision: 0 });
  });
});

describe('leaseHolds', () => {
  const rows = [
    { ttlMs: 5000, sentAt: 1000, now: 1000, holds: true },
    { ttlMs: 5000, sentAt: 1000, now: 5499, holds: true },
    { ttlMs: 5000, sentAt: 1000, now: 5500, holds: false },
    { ttlMs: 2000, sentAt: 0, now: 1499, holds: true },
    { ttlMs: 2000, sentAt: 0, now: 1500, holds: false },
    { ttlMs: 30000, sentAt: 0, now: 26999, holds: true },
    { ttlMs: 30000, sentAt: 0, now: 27000, holds: false },
  ];
  for (const row of rows) {
    it(`a ${row.ttlMs} ms lease renewed at ${row.sentAt} ${row.holds ? 'holds' : 'no longer holds'} at ${row.now}`, () => {
      expect(leaseHolds(row.sentAt, row.ttlMs, row.now)).toBe(row.holds);
    });
  }
  it('keeps at least half a second of margin', () => {
    expect(leaseMarginMs(2000)).toBe(500);
    expect(leaseMarginMs(30000)).toBe(3000);
  });
});
