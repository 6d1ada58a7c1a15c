// What each node of a resize sends and receives (planMigration), as a table of situations, and which
// slots make up the next batch (nextSendSlots). Slot counts are those of jump hash over 16384 slots.
import { describe, expect, it } from 'vitest';
import type { ShardConfig } from '../../src/core/config.js';
import { slotCount } from '../../src/core/limits.js';
import { nextSendSlots, planMigration, type MigrationPlan } from '../../src/cluster/migration-plan.js';

const shard = (name: string, idx: number): ShardConfig => ({ name, idx, address: `127.0.0.1:${7000 + idx}`, replica: `127.0.0.1:${7100 + idx}` });
const a = shard('a', 0);
const b = shard('b', 1);
const ab = [a, b];
const abc = [a, b, shard('c', 2)];
/** b removed: c takes index 1. */
const ac = [a, shard('c', 1)];
const none = new Uint8Array(slotCount);
const all = new Uint8Array(slotCount).fill(1);

/** Slots per new owner still to send, slots per previous owner still to receive, and the totals. */
function summary(plan: MigrationPlan, previous: readonly ShardConfig[]) {
  const sendLeft: Record<string, number> = {};
  const receiveLeft: Record<string, number> = {};
  for (let slot = 0; slot < slotCount; slot++) {
    const to = plan.newOwnerNames[slot]!;
    if (plan.outgoing[slot]) sendLeft[to] = (sendLeft[to] ?? 0) + 1;
    const from = previous[plan.previousOwners[slot]!]!.name;
    if (plan.incoming[slot]) receiveLeft[from] = (receiveLeft[from] ?? 0) + 1;
  }
  return { slotsToSend: plan.slotsToSend, sendLeft, slotsToReceive: plan.slotsToReceive, receiveLeft };
}

describe('planMigration', () => {
  it.each([
    {
      name: 'grow 1 to 2, the old shard',
      input: { previous: [a], next: ab, self: 'a' },
      plan: { slotsToSend: 8197, sendLeft: { b: 8197 }, slotsToReceive: 0, receiveLeft: {} },
    },
    {
      name: 'grow 1 to 2, the new shard',
      input: { previous: [a], next: ab, self: 'b' },
      plan: { slotsToSend: 0, sendLeft: {}, slotsToReceive: 8197, receiveLeft: { a: 8197 } },
    },
    {
      name: 'grow 2 to 3, an old shard',
      input: { previous: ab, next: abc, self: 'a' },
      plan: { slotsToSend: 2731, sendLeft: { c: 2731 }, slotsToReceive: 0, receiveLeft: {} },
    },
    {
      name: 'grow 2 to 3, the new shard receives from both',
      input: { previous: ab, next: abc, self: 'c' },
      plan: { slotsToSend: 0, sendLeft: {}, slotsToReceive: 5469, receiveLeft: { a: 2731, b: 2738 } },
    },
    {
      name: 'shrink 3 to 2, the drained shard sends everything to its successor',
      input: { previous: abc, next: ac, self: 'b' },
      plan: { slotsToSend: 5459, sendLeft: { c: 5459 }, slotsToReceive: 0, receiveLeft: {} },
    },
    {
      name: 'shrink 3 to 2, a remaining shard both sends and receives',
      input: { previous: abc, next: ac, self: 'c' },
      plan: { slotsToSend: 2731, sendLeft: { a: 2731 }, slotsToReceive: 5459, receiveLeft: { b: 5459 } },
    },
    {
      name: 'the same layout: nothing moves',
      input: { previous: ab, next: ab, self: 'a' },
      plan: { slotsToSend: 0, sendLeft: {}, slotsToReceive: 0, receiveLeft: {} },
    },
    {
      name: 'a shard in neither layout',
      input: { previous: ab, next: abc, self: 'z' },
      plan: { slotsToSend: 0, sendLeft: {}, slotsToReceive: 0, receiveLeft: {} },
    },
    {
      name: 'restarted after everything was sent',
      input: { previous: ab, next: abc, self: 'a', sent: all },
      plan: { slotsToSend: 2731, sendLeft: {}, slotsToReceive: 0, receiveLeft: {} },
    },
    {
      name: 'restarted after everything arrived',
      input: { previous: ab, next: abc, self: 'c', received: all },
      plan: { slotsToSend: 0, sendLeft: {}, slotsToReceive: 5469, receiveLeft: {} },
    },
  ])('$name', ({ input, plan }) => {
    const computed = planMigration({ received: none, sent: none, ...input });
    expect(summary(computed, input.previous)).toEqual(plan);
  });
});

describe('nextSendSlots', () => {
  const owners = ['a', 'c', 'b', 'c', 'b', ...Array<string>(slotCount - 5).fill('a')];
  const outgoing = (...slots: number[]) => {
    const marks = new Uint8Array(slotCount);
    for (const slot of slots) marks[slot] = 1;
    return marks;
  };
  it.each([
    { name: 'nothing left to send', outgoing: outgoing(), batch: undefined },
    { name: 'the lowest slot names the target, its other slots follow', outgoing: outgoing(1, 2, 3, 4), batch: { to: 'c', slots: [1, 3] } },
    { name: 'slots of another target wait for a later batch', outgoing: outgoing(2, 3, 4), batch: { to: 'b', slots: [2, 4] } },
    { name: 'one slot left', outgoing: outgoing(slotCount - 1), batch: { to: 'a', slots: [slotCount - 1] } },
  ])('$name', ({ outgoing, batch }) => {
    expect(nextSendSlots(outgoing, owners)).toEqual(batch);
  });
});
