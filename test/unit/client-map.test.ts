// The client's checks of a /cluster answer before it routes by one, and how it merges two maps.
import { describe, expect, it } from 'vitest';
import { checkMap, mergeMaps, Routes, type ClusterMap } from '../../src/client/cluster-map.js';
import { jumpHash, keySlot } from '../../src/core/slots.js';

function map(epochs: number[] = [1, 1], layout = 'a1b2c3d4e5f6'): ClusterMap {
  return {
    version: 1,
    layout_id: layout,
    slots: 16384,
    slot_assignment: 'jump',
    node: { shard: 's0', role: 'primary', address: '127.0.0.1:1000' },
    shards: epochs.map((epoch, idx) => ({
      name: `s${idx}`,
      idx,
      members: [`127.0.0.1:${1000 + idx}`, `127.0.0.1:${2000 + idx}`] as [string, string],
      primary: epoch % 2 === 1 ? `127.0.0.1:${1000 + idx}` : `127.0.0.1:${2000 + idx}`,
      replica: epoch % 2 === 1 ? `127.0.0.1:${2000 + idx}` : `127.0.0.1:${1000 + idx}`,
      epoch,
    })),
    migration: null,
  };
}

describe('checkMap', () => {
  it('takes a well-formed map', () => {
    expect(checkMap(map(), 'n')).toEqual(map());
  });

  it.each([
    ['another version', { ...map(), version: 2 }],
    ['a bad layout id', { ...map(), layout_id: 'x' }],
    ['no shards', { ...map(), shards: [] }],
    ['an idx out of order', { ...map(), shards: [map().shards[1]!, map().shards[0]!] }],
    ['a primary that is not a member', { ...map(), shards: [{ ...map().shards[0]!, primary: '10.0.0.1:80' }, map().shards[1]!] }],
    ['a member that is not host:port', { ...map(), shards: [{ ...map().shards[0]!, members: ['http://x/y', '127.0.0.1:2000'] }, map().shards[1]!] }],
    ['a zero epoch', { ...map(), shards: [{ ...map().shards[0]!, epoch: 0 }, map().shards[1]!] }],
    ['more shards than slots', { ...map(), shards: new Array(16385).fill(map().shards[0]) }],
  ])('refuses %s', (_what, raw) => {
    expect(() => checkMap(raw, 'n')).toThrow(expect.objectContaining({ code: 'bad_answer' }));
  });
});

describe('mergeMaps', () => {
  it('keeps the higher epoch of each shard of one layout', () => {
    const merged = mergeMaps(map([2, 1]), map([1, 3]));
    expect(merged.shards.map((s) => [s.epoch, s.primary])).toEqual([
      [2, '127.0.0.1:2000'],
      [3, '127.0.0.1:1001'],
    ]);
  });

  it('takes a map of another layout whole', () => {
    expect(mergeMaps(map([5, 5]), map([1, 1, 1], 'ffffffffffff'))).toEqual(map([1, 1, 1], 'ffffffffffff'));
  });
});

it('routes a key to the shard the nodes compute', () => {
  const routes = new Routes(map([1, 1]));
  for (const key of ['a', 'b', '{user42}.name', 'ünï']) {
    const slot = keySlot(Buffer.from(key));
    expect(routes.shardOfSlot(slot).idx).toBe(jumpHash(slot, 2));
  }
  expect(routes.names('127.0.0.1:2001')).toBe(true);
  expect(routes.names('127.0.0.1:9999')).toBe(false);
});
