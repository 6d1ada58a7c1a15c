// Consistent read-only views of the data: a snapshot that a replica's resync or a primary's rebuild
// copies in chunks, and digests of slot ranges that `verify` compares between a primary and its replica.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { Database, RootDatabase, Transaction } from 'lmdb';
import { slotCount } from '../core/limits.js';
import { appliedSeqKey, datasetIdKey, isComplete, replicaDatasetKey, resyncIdKey } from './dataset-store.js';
import { slotBound, slotEnd } from './keys.js';
import { entryBytes, type ReplicationLog } from './replication-log.js';

export interface SnapshotChunk {
  readonly pairs: [Buffer, Buffer][];
  /** The last storage key in the chunk: the next chunk starts after it. */
  readonly lastKey: Buffer | undefined;
}

/**
 * A consistent read-only view of the data and the sequence it corresponds to: on a primary its log's
 * last sequence, on a replica its applied sequence of the dataset it follows.
 */
export interface Snapshot {
  readonly seq: number;
  readonly keyCount: number;
  /** The primary dataset the data belongs to (on a replica: the one it follows, if any). */
  readonly datasetId: string | undefined;
  /** False on a replica whose resync is under way, or that never completed one: its data is partial. */
  readonly complete: boolean;
  chunk(afterKey: Buffer | undefined, entriesMax: number, bytesMax: number): SnapshotChunk;
  done(): void;
}

export interface SlotRangeDigest {
  readonly from: number;
  readonly to: number;
  readonly keys: number;
  readonly digest: string;
}

/** The databases a snapshot or a digest reads. */
export interface SnapshotSource {
  readonly root: RootDatabase;
  readonly data: Database<Buffer, Buffer>;
  readonly meta: Database<unknown, string>;
  readonly log: ReplicationLog | undefined;
}

/** A consistent snapshot of the data with the sequence it reflects. Call done() when finished. */
export function takeSnapshot(source: SnapshotSource): Snapshot {
  const { root, data, meta, log } = source;
  const transaction: Transaction = root.useReadTransaction();
  const read = (key: string) => meta.get(key, { transaction });
  const keyCount = data.getCount({ transaction });
  const seq = log ? log.lastSeq(transaction) : ((read(appliedSeqKey) as number | undefined) ?? 0);
  const datasetId = (read(log ? datasetIdKey : replicaDatasetKey) as string | undefined) ?? undefined;
  const complete = log !== undefined || isComplete({ datasetId, appliedSeq: seq, resyncId: read(resyncIdKey) as string | undefined });
  return {
    seq,
    keyCount,
    datasetId,
    complete,
    chunk: (afterKey, entriesMax, bytesMax) => {
      const pairs: [Buffer, Buffer][] = [];
      let bytes = 0;
      for (const { key, value } of data.getRange({ transaction, start: afterKey, limit: entriesMax + 1 })) {
        if (afterKey && pairs.length === 0 && key.equals(afterKey)) continue;
        const size = entryBytes({ key, value });
        if (pairs.length >= entriesMax || (pairs.length > 0 && bytes + size > bytesMax)) break;
        pairs.push([Buffer.from(key), Buffer.from(value)]);
        bytes += size;
      }
      return { pairs, lastKey: pairs.at(-1)?.[0] };
    },
    done: () => transaction.done(),
  };
}

/**
 * Digests of the keys and values in `buckets` equal ranges of slots from `fromSlot` to `toSlot`, read
 * in one consistent snapshot. Equal digests mean equal data; a differing range can be narrowed further.
 */
export function digestSlots(source: SnapshotSource, fromSlot: number, toSlot: number, buckets: number): SlotRangeDigest[] {
  const { root, data } = source;
  assert.ok(fromSlot >= 0 && toSlot < slotCount && fromSlot <= toSlot && buckets >= 1);
  const transaction = root.useReadTransaction();
  try {
    const span = toSlot - fromSlot + 1;
    const count = Math.min(buckets, span);
    const out: SlotRangeDigest[] = [];
    for (let b = 0; b < count; b++) {
      const from = fromSlot + Math.floor((b * span) / count);
      const to = fromSlot + Math.floor(((b + 1) * span) / count) - 1;
      const hash = createHash('sha256');
      let keys = 0;
      const end = slotEnd(to);
      for (const { key, value } of data.getRange({ transaction, start: slotBound(from), end })) {
        const lengths = Buffer.allocUnsafe(8);
        lengths.writeUInt32BE(key.length, 0);
        lengths.writeUInt32BE(value.length, 4);
        hash.update(lengths).update(key).update(value);
        keys++;
      }
      out.push({ from, to, keys, digest: hash.digest('hex') });
    }
    return out;
  } finally {
    transaction.done();
  }
}
