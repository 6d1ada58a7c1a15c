// The plan of a migration: from the previous layout, the new one and this node's shard, which slots this
// node sends (and to whom) and which it receives. Pure, so a unit test covers it from layouts alone; the
// Migration reads what is already done from its store and keeps the plan's progress.
//
// Every node derives the same plan from the two layouts: a slot moves when its owner's name differs
// between them (an owner is named, not numbered, so a shard keeps its slots when another is removed
// before it).

import type { ShardConfig } from '../core/config.js';
import { slotCount } from '../core/limits.js';
import { slotTable } from '../core/slots.js';

/** The shard names owning each slot in a layout. */
export function slotOwnerNames(shards: readonly ShardConfig[]): string[] {
  const owners = slotTable(shards.length);
  return Array.from(owners, (idx) => shards[idx]!.name);
}

/** How many slots change owner between two layouts: the moved fraction of a resize. */
export function movedSlotCount(previous: readonly ShardConfig[], next: readonly ShardConfig[]): number {
  const before = slotOwnerNames(previous);
  const after = slotOwnerNames(next);
  return before.reduce((n, name, slot) => (name !== after[slot] ? n + 1 : n), 0);
}

export interface MigrationPlanInput {
  readonly previous: readonly ShardConfig[];
  readonly next: readonly ShardConfig[];
  /** This node's shard name (in a drain, a shard that is no longer in `next`). */
  readonly self: string;
  /** 1 for each slot already received here (kept in the store across restarts). */
  readonly received: ArrayLike<number>;
  /** 1 for each slot already sent from here. */
  readonly sent: ArrayLike<number>;
}

export interface MigrationPlan {
  /** The index in `previous` of each slot's previous owner. */
  readonly previousOwners: Uint16Array;
  /** Each slot's owner in `next`. */
  readonly newOwnerNames: readonly string[];
  /** 1 while a slot still has to arrive here. */
  readonly incoming: Uint8Array;
  /** 1 while a slot still has to be sent from here. */
  readonly outgoing: Uint8Array;
  /** Slots this node receives in the whole migration, and sends. */
  readonly slotsToReceive: number;
  readonly slotsToSend: number;
}

export function planMigration(input: MigrationPlanInput): MigrationPlan {
  const { self, received, sent } = input;
  const before = slotOwnerNames(input.previous);
  const newOwnerNames = slotOwnerNames(input.next);
  const incoming = new Uint8Array(slotCount);
  const outgoing = new Uint8Array(slotCount);
  let slotsToReceive = 0;
  let slotsToSend = 0;
  for (let slot = 0; slot < slotCount; slot++) {
    const from = before[slot]!;
    const to = newOwnerNames[slot]!;
    if (from === to) continue;
    if (to === self) {
      slotsToReceive++;
      if (!received[slot]) incoming[slot] = 1;
    }
    if (from === self) {
      slotsToSend++;
      if (!sent[slot]) outgoing[slot] = 1;
    }
  }
  return { previousOwners: slotTable(input.previous.length), newOwnerNames, incoming, outgoing, slotsToReceive, slotsToSend };
}

/**
 * The slots of the next batch: those still to send that go to the same new owner as the lowest one, in
 * slot order (one contiguous LMDB range each); undefined when nothing is left to send.
 */
export function nextSendSlots(outgoing: Uint8Array, newOwnerNames: readonly string[]): { readonly to: string; readonly slots: number[] } | undefined {
  const first = outgoing.indexOf(1);
  if (first < 0) return undefined;
  const to = newOwnerNames[first]!;
  const slots: number[] = [];
  for (let slot = first; slot < slotCount; slot++) {
    if (outgoing[slot] === 1 && newOwnerNames[slot] === to) slots.push(slot);
  }
  return { to, slots };
}
