// The promotion grant rule (cluster/grants.ts) and the majority arithmetic (cluster/quorum.ts), as
// tables: the clock and every input are arguments.
import { describe, expect, it } from 'vitest';
import type { ShardConfig } from '../../src/core/config.js';
import { decideGrant, decodeGrants, type GranterState, type GrantRequest } from '../../src/cluster/grants.js';
import { canElectWithout, isMajority, Liveness, majorityOf, votersOf } from '../../src/cluster/quorum.js';

const A = '127.0.0.1:1001';
const B = '127.0.0.1:1002';
const C = '127.0.0.1:1003';

const state = (over: Partial<GranterState> = {}): GranterState => ({
  self: C,
  epochsKnown: true,
  known: { epoch: 1, primary: A, kind: 'initial', at: null },
  granted: undefined,
  primaryLastHeard: 0,
  nodeTimeoutMs: 5_000,
  now: 10_000,
  ...over,
});
const ask = (over: Partial<GrantRequest> = {}): GrantRequest => ({ shard: 's1', epoch: 2, candidate: B, kind: 'switchover', ...over });

describe('decideGrant', () => {
  const cases: [string, GranterState, GrantRequest, ReturnType<typeof decideGrant>['grant'], string?][] = [
    ['grants the next epoch of a switchover', state(), ask(), true],
    ['refuses while it does not know the epochs (new data dir)', state({ epochsKnown: false }), ask(), false, 'unknown'],
    ['refuses an epoch not above the one it knows', state({ known: { epoch: 2, primary: A, kind: 'switchover', at: null } }), ask(), false, 'stale_epoch'],
    ['refuses a second member at an epoch it granted', state({ granted: { epoch: 2, primary: A } }), ask(), false, 'granted_other'],
    ['refuses an epoch below one it granted', state({ granted: { epoch: 3, primary: B } }), ask(), false, 'granted_other'],
    ['grants the same member the same epoch again', state({ granted: { epoch: 2, primary: B } }), ask(), true],
    ['grants an epoch above the one it granted', state({ granted: { epoch: 2, primary: A } }), ask({ epoch: 3 }), true],
    [
      'refuses a forced promotion while the primary was heard within node_timeout_ms',
      state({ primaryLastHeard: 6_000 }),
      ask({ kind: 'forced' }),
      false,
      'primary_alive',
    ],
    ['grants a forced promotion once the primary is silent for node_timeout_ms', state({ primaryLastHeard: 5_000 }), ask({ kind: 'forced' }), true],
    ['the primary itself refuses a forced promotion over it', state({ self: A }), ask({ kind: 'forced' }), false, 'primary_alive'],
    ['a switchover needs no silence', state({ primaryLastHeard: 9_999 }), ask(), true],
    [
      'refuses a forced epoch it granted before once the primary is heard again',
      state({ granted: { epoch: 2, primary: B }, primaryLastHeard: 9_000 }),
      ask({ kind: 'forced' }),
      false,
      'primary_alive',
    ],
  ];
  for (const [name, granter, request, grant, code] of cases) {
    it(name, () => {
      const decision = decideGrant(granter, request);
      expect(decision.grant).toBe(grant);
      if (!decision.grant) expect(decision.code).toBe(code);
    });
  }

  it('asks to store only a grant it has not stored', () => {
    expect(decideGrant(state(), ask())).toEqual({ grant: true, store: true });
    expect(decideGrant(state({ granted: { epoch: 2, primary: B } }), ask())).toEqual({ grant: true, store: false });
  });

  it('decodes only well-formed grants from a peer', () => {
    expect(decodeGrants({ s1: { epoch: 2, primary: B }, s2: { epoch: 0, primary: A }, s3: { epoch: 2 }, s4: 'x' })).toEqual({ s1: { epoch: 2, primary: B } });
    expect(decodeGrants(null)).toEqual({});
  });
});

const shard = (name: string, address: string, replica: string, idx: number): ShardConfig => ({ name, idx, address, replica });

describe('quorum', () => {
  it('counts majorities of every voter set', () => {
    expect([1, 2, 3, 4, 5, 6].map(majorityOf)).toEqual([1, 2, 2, 3, 3, 4]);
    const six = ['a', 'b', 'c', 'd', 'e', 'f'];
    const four = ['a', 'b', 'c', 'd'];
    expect(isMajority(new Set(['a', 'b', 'c', 'd']), [six])).toBe(true);
    expect(isMajority(new Set(['a', 'b', 'c']), [six])).toBe(false);
    // During a migration both layouts must agree.
    expect(isMajority(new Set(['a', 'b', 'e', 'f']), [six, four])).toBe(false);
    expect(isMajority(new Set(['a', 'b', 'c', 'e']), [six, four])).toBe(true);
  });

  it('lists each node once and knows when a cluster can elect without one node', () => {
    const one = [shard('s1', A, B, 0)];
    const three = [shard('s1', A, B, 0), shard('s2', C, '127.0.0.1:1004', 1), shard('s3', '127.0.0.1:1005', '127.0.0.1:1006', 2)];
    expect(votersOf(one)).toEqual([A, B]);
    expect(votersOf(three)).toHaveLength(6);
    expect(canElectWithout([votersOf(one)])).toBe(false);
    expect(canElectWithout([votersOf(three)])).toBe(true);
  });

  it('knows since when a majority has answered it, counting itself and every peer as answered at its start', () => {
    const voters = ['s', 'p1', 'p2', 'p3', 'p4'];
    const live = new Liveness('s', 1_000);
    expect(live.majorityAt([voters])).toBe(1_000);
    live.answered('p1', 5_000);
    live.answered('p2', 4_000);
    expect(live.majorityAt([voters])).toBe(4_000);
    live.answered('p3', 9_000);
    expect(live.majorityAt([voters])).toBe(5_000);
    // A reply read late never moves the time back.
    live.answered('p3', 2_000);
    expect(live.majorityAt([voters])).toBe(5_000);
  });

  it('counts messages that only arrive (a one-way cut) as heard, never as answered', () => {
    const voters = ['s', 'p1', 'p2'];
    const live = new Liveness('s', 1_000);
    live.heard('p1', 8_000);
    live.heard('p2', 8_000);
    expect(live.lastHeardFrom('p1')).toBe(8_000);
    expect(live.majorityAt([voters])).toBe(1_000);
    expect(live.lastHeardFrom('p3')).toBe(1_000);
  });
});
