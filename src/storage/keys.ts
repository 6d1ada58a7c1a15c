// How the store lays out keys in LMDB: a user key is stored behind its slot as two big-endian bytes, so
// one slot's keys form one contiguous range (migration moves a slot at a time by scanning that range).
// Values are raw bytes. Pure: no I/O.

import { slotCount } from '../core/limits.js';

export type Mutation =
  | { readonly type: 'set'; readonly slot: number; readonly key: Buffer; readonly value: Buffer }
  | {
      readonly type: 'delete';
      readonly slot: number;
      readonly key: Buffer;
      /** Remember the delete (a tombstone) so that a key migrated in later does not bring it back. */
      readonly tombstone?: boolean;
    };

/** The slot-prefixed LMDB key of a user key. */
export function storageKey(slot: number, key: Uint8Array): Buffer {
  const stored = Buffer.allocUnsafe(2 + key.length);
  stored.writeUInt16BE(slot, 0);
  stored.set(key, 2);
  return stored;
}

/** The end bound (exclusive) of a slot's key range; undefined for the last slot (to the end). */
export function slotEnd(slot: number): Buffer | undefined {
  return slot + 1 < slotCount ? slotBound(slot + 1) : undefined;
}

/** The start bound (inclusive) of a slot's key range. */
export function slotBound(slot: number): Buffer {
  const bound = Buffer.allocUnsafe(2);
  bound.writeUInt16BE(slot, 0);
  return bound;
}

/**
 * A record read from the meta database with its layout ids under their current name: data dirs written
 * before "layout" replaced "topology" in kvshard's vocabulary store them as `topologyId`, and keep
 * opening. Applies to the record and to its `previous` layout.
 */
export function withLayoutIds<T>(record: T): T {
  if (typeof record !== 'object' || record === null) return record;
  const r = record as Record<string, unknown>;
  if (r['layoutId'] === undefined && typeof r['topologyId'] === 'string') r['layoutId'] = r['topologyId'];
  if (r['previous'] !== undefined) withLayoutIds(r['previous']);
  return record;
}
