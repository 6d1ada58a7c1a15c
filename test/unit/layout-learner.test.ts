// What a primary just added (shard c of layout B = a, b, c) concludes from one peer's answer to its
// layout announcement (learnFromAnswer), as a table of situations. A is the layout before c was added.
import { describe, expect, it } from 'vitest';
import type { LayoutRecord, ShardConfig } from '../../src/core/config.js';
import { learnFromAnswer, type LearnerKnowledge } from '../../src/cluster/layout-learner.js';
import type { LayoutAnswer } from '../../src/cluster/cluster-view.js';

const shard = (name: string, idx: number): ShardConfig => ({ name, idx, address: `127.0.0.1:${7000 + idx}`, replica: `127.0.0.1:${7100 + idx}` });
const A: LayoutRecord = { layoutId: 'A', shards: [shard('a', 0), shard('b', 1)] };
const B: LayoutRecord = { layoutId: 'B', shards: [shard('a', 0), shard('b', 1), shard('c', 2)] };
const C: LayoutRecord = { layoutId: 'C', shards: [...B.shards, shard('d', 3)] };

const known = (...emptyPeers: string[]): LearnerKnowledge => ({ layoutId: 'B', shardCount: 3, emptyPeers: new Set(emptyPeers) });
const answer = (layout: LayoutRecord, over: Partial<LayoutAnswer> = {}): LayoutAnswer => ({
  node: 'a/primary',
  decided: true,
  layout,
  migratingFrom: null,
  keys: 10,
  epochs: {},
  epochsKnown: true,
  grants: {},
  ...over,
});
const waiting = (...emptyPeers: string[]) => ({ kind: 'keep-waiting', emptyPeers: new Set(emptyPeers) });

describe('learnFromAnswer', () => {
  it.each([
    {
      name: 'a primary on this layout migrates from A',
      known: known(),
      role: 'primary',
      answer: answer(B, { migratingFrom: A }),
      outcome: { kind: 'keys-move-here', previous: A, why: 'a migrates from it' },
    },
    {
      name: 'a primary on this layout with no migration',
      known: known(),
      role: 'primary',
      answer: answer(B),
      outcome: { kind: 'nothing-moves', why: 'a runs this layout with no migration' },
    },
    {
      name: 'a primary on this layout, still learning too, with keys',
      known: known(),
      role: 'primary',
      answer: answer(B, { decided: false }),
      outcome: waiting('a'),
    },
    { name: 'a primary on the old layout holding keys', known: known(), role: 'primary', answer: answer(A), outcome: waiting() },
    { name: 'a primary on a newer layout holding keys', known: known(), role: 'primary', answer: answer(C), outcome: waiting() },
    { name: 'a primary on the old layout with no keys', known: known(), role: 'primary', answer: answer(A, { keys: 0 }), outcome: waiting('a') },
    {
      name: 'the last other primary found empty',
      known: known('b'),
      role: 'primary',
      answer: answer(A, { keys: 0 }),
      outcome: { kind: 'nothing-moves', why: 'no other primary holds keys: a new cluster' },
    },
    { name: 'the same empty primary answering twice', known: known('a'), role: 'primary', answer: answer(A, { keys: 0 }), outcome: waiting('a') },
    { name: 'a replica on this layout migrating from A', known: known(), role: 'replica', answer: answer(B, { migratingFrom: A }), outcome: waiting() },
    { name: 'a replica with no keys', known: known('b'), role: 'replica', answer: answer(A, { keys: 0 }), outcome: waiting('b') },
  ] as const)('$name', ({ known, role, answer, outcome }) => {
    expect(learnFromAnswer(known, 'a', role, answer)).toEqual(outcome);
  });
});
