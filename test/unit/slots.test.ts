// Routing vectors: slots must equal Redis Cluster's CLUSTER KEYSLOT and shard indexes must follow the
// jump consistent hash paper, so that clients in any language route exactly as kvshard does.
import { describe, expect, it } from 'vitest';
import { crc16, jumpHash, keySlot, slotTable } from '../../src/core/slots.js';

const slot = (key: string) => keySlot(Buffer.from(key, 'utf8'));

describe('crc16 and keySlot', () => {
  it('matches the CRC16-XMODEM check value', () => {
    expect(crc16(Buffer.from('123456789'))).toBe(0x31c3);
  });

  it.each([
    ['foo', 12182],
    ['bar', 5061],
    ['hello', 866],
    ['{user1000}.following', 3443],
    ['{user1000}.followers', 3443],
    ['foo{}{bar}', 8363],
    ['foo{{bar}}zap', 4015],
    ['foo{bar}{zap}', 5061],
  ])('slot(%j) = %i', (key, expected) => {
    expect(slot(key)).toBe(expected);
  });

  it('hashes only the tag when the key has one', () => {
    expect(slot('{user42}.name')).toBe(slot('{user42}.email'));
    expect(slot('{user42}.name')).toBe(slot('user42'));
  });
});

describe('jumpHash', () => {
  it.each([
    [866, 3, 2],
    [866, 4, 3],
    [12182, 2, 1],
    [16383, 10, 9],
    [1, 10, 6],
  ])('jump(%i, %i) = %i', (key, buckets, expected) => {
    expect(jumpHash(key, buckets)).toBe(expected);
  });

  it('moves exactly 25.0% of slots from 3 to 4 shards, and only to the new shard', () => {
    const before = slotTable(3);
    const after = slotTable(4);
    let moved = 0;
    for (let s = 0; s < before.length; s++) {
      if (before[s] !== after[s]) {
        moved++;
        expect(after[s]).toBe(3);
      }
    }
    expect(((moved / before.length) * 100).toFixed(1)).toBe('25.0');
  });

  it('rejects a bucket count below one', () => {
    expect(() => jumpHash(1, 0)).toThrow(RangeError);
  });
});
