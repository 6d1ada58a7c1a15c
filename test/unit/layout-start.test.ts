// What a node does with its stored layout when it starts (decideLayoutStart), as a table of situations.
// Layout A has shards a and b; B adds c; C adds d too. "old" is a record written before online resize
// (no shard list).
import { describe, expect, it } from 'vitest';
import type { ShardConfig } from '../../src/core/config.js';
import { decideLayoutStart, type LayoutStartFacts, type StoredLayout } from '../../src/cluster/layout-start.js';
import type { MigrationRecord } from '../../src/storage/migration-store.js';

const shard = (name: string, idx: number): ShardConfig => ({ name, idx, address: `127.0.0.1:${7000 + idx}`, replica: `127.0.0.1:${7100 + idx}` });
const layouts = {
  A: { layoutId: 'A', shards: [shard('a', 0), shard('b', 1)] },
  B: { layoutId: 'B', shards: [shard('a', 0), shard('b', 1), shard('c', 2)] },
  C: { layoutId: 'C', shards: [shard('a', 0), shard('b', 1), shard('c', 2), shard('d', 3)] },
} as const;
const old: StoredLayout = { layoutId: 'A' };
const now = 1_000;
const migrating = (from: keyof typeof layouts, to: string, finishedAt?: number): MigrationRecord => ({
  previous: layouts[from],
  layoutId: to,
  startedAt: 500,
  ...(finishedAt === undefined ? {} : { finishedAt }),
  keysSent: 0,
  keysReceived: 0,
});
const config = (id: keyof typeof layouts) => ({ file: 'sharding.toml', ...layouts[id] });
const single = { file: 'sharding.toml', layoutId: 'S', shards: [shard('a', 0)] };

function facts(over: Partial<LayoutStartFacts>): LayoutStartFacts {
  return { config: config('B'), name: 'a', role: 'primary', path: '/data/a-primary', stored: undefined, migration: undefined, now, ...over };
}

const fromAtoB = migrating('A', 'B');
const doneAtoB = migrating('A', 'B', 900);
const startsNow = (from: keyof typeof layouts, to: string) => ({ ...migrating(from, to), startedAt: now });

describe('decideLayoutStart', () => {
  it.each([
    { name: 'primary, same layout as stored', facts: facts({ stored: layouts.B }), outcome: { kind: 'start-as-is', record: undefined } },
    {
      name: 'primary, same layout, last migration finished',
      facts: facts({ stored: layouts.B, migration: doneAtoB }),
      outcome: { kind: 'start-as-is', record: doneAtoB },
    },
    { name: 'primary, layout changed', facts: facts({ stored: layouts.A }), outcome: { kind: 'start-migration', record: startsNow('A', 'B') } },
    {
      name: 'primary, layout changed again after a finished migration',
      facts: facts({ config: config('C'), stored: layouts.B, migration: migrating('A', 'B', 900) }),
      outcome: { kind: 'start-migration', record: startsNow('B', 'C') },
    },
    {
      name: 'primary restarted mid-migration with the same config',
      facts: facts({ stored: layouts.B, migration: fromAtoB }),
      outcome: { kind: 'start-as-is', record: fromAtoB },
    },
    {
      name: 'primary mid-migration started with a third layout',
      facts: facts({ config: config('C'), stored: layouts.B, migration: fromAtoB }),
      outcome: { kind: 'refuse', message: expect.stringContaining('is still moving keys from layout A to B, and this config is a third layout (C)') },
    },
    { name: 'new primary of a cluster of several shards', facts: facts({ name: 'c' }), outcome: { kind: 'learn-from-peers' } },
    { name: 'new primary of a single shard', facts: facts({ config: single }), outcome: { kind: 'record-layout', record: undefined } },
    { name: 'new replica', facts: facts({ role: 'replica' }), outcome: { kind: 'record-layout', record: undefined } },
    { name: 'replica, layout changed', facts: facts({ role: 'replica', stored: layouts.A }), outcome: { kind: 'record-layout', record: undefined } },
    { name: 'replica, same layout', facts: facts({ role: 'replica', stored: layouts.B }), outcome: { kind: 'start-as-is', record: undefined } },
    {
      name: 'replica mid-migration with the same config',
      facts: facts({ role: 'replica', stored: layouts.B, migration: fromAtoB }),
      outcome: { kind: 'start-as-is', record: fromAtoB },
    },
    {
      name: 'record from before online resize, same layout: upgraded',
      facts: facts({ config: config('A'), stored: old }),
      outcome: { kind: 'record-layout', record: undefined },
    },
    {
      name: 'record from before online resize, layout changed',
      facts: facts({ stored: old }),
      outcome: {
        kind: 'refuse',
        message: 'sharding.toml: shards: /data/a-primary was written by a kvshard without online resize; start it with its old config',
      },
    },
    {
      name: 'drain of a shard the stored layout names',
      facts: facts({ config: config('A'), name: 'c', role: 'drain', stored: layouts.B }),
      outcome: { kind: 'start-migration', record: startsNow('B', 'A') },
    },
    {
      name: 'drain of a shard the stored layout does not name',
      facts: facts({ config: config('A'), name: 'd', role: 'drain', stored: layouts.B }),
      outcome: { kind: 'refuse', message: '/data/a-primary: holds no layout that names d: there is nothing to drain' },
    },
    {
      name: 'drain with no stored layout',
      facts: facts({ config: config('A'), name: 'c', role: 'drain' }),
      outcome: { kind: 'refuse', message: '/data/a-primary: holds no layout that names c: there is nothing to drain' },
    },
    {
      name: 'drain restarted mid-migration',
      facts: facts({ config: config('A'), name: 'c', role: 'drain', stored: layouts.A, migration: migrating('B', 'A') }),
      outcome: { kind: 'start-as-is', record: migrating('B', 'A') },
    },
  ])('$name', ({ facts, outcome }) => {
    expect(decideLayoutStart(facts)).toEqual(outcome);
  });
});
