// The primary's replication log: every committed set and delete, numbered by a contiguous sequence,
// written in the same LMDB transaction as the data change it describes. The log survives restarts;
// entries the replica has acknowledged are trimmed, and the log's size is bounded by retention bytes.

import assert from 'node:assert/strict';
import type { Database, RootDatabase, Transaction } from 'lmdb';
import type { Mutation } from './keys.js';

export interface LogEntry {
  readonly seq: number;
  readonly type: 'set' | 'delete';
  readonly slot: number;
  readonly key: Buffer;
  /** Present for sets. */
  readonly value?: Buffer;
  /** When the primary committed it (ms since the epoch), for lag in seconds. */
  readonly ts: number;
}

/** How a log entry is stored: short field names, as msgpack. */
interface StoredEntry {
  t: 0 | 1;
  s: number;
  k: Buffer;
  v?: Buffer;
  ts: number;
  /** Bytes appended to the log through this entry, so trimming knows what it frees without reading values. */
  cb: number;
}

/** Approximate bytes an entry costs, for batch and retention bounds. */
export function entryBytes(e: { key: Buffer; value?: Buffer | undefined }): number {
  return 32 + e.key.length + (e.value?.length ?? 0);
}

const lastSeqKey = 'log.lastSeq';
const firstSeqKey = 'log.firstSeq';
/** Bytes ever appended, and bytes of the entries trimmed so far: the log holds the difference. */
const appendedBytesKey = 'log.appendedBytes';
const trimmedBytesKey = 'log.trimmedBytes';

export class ReplicationLog {
  private readonly entries: Database<StoredEntry, number>;

  constructor(
    private readonly root: RootDatabase,
    private readonly meta: Database<unknown, string>,
  ) {
    this.entries = root.openDB<StoredEntry, number>('replication-log', { encoding: 'msgpack', keyEncoding: 'ordered-binary' });
  }

  /** The sequence of the newest entry (0 when nothing was ever written), optionally in a read snapshot. */
  lastSeq(transaction?: Transaction): number {
    return (this.meta.get(lastSeqKey, transaction ? { transaction } : undefined) as number | undefined) ?? 0;
  }

  /** The sequence of the oldest retained entry; lastSeq() + 1 when the log is empty. */
  firstSeq(): number {
    return (this.meta.get(firstSeqKey) as number | undefined) ?? 1;
  }

  bytes(): number {
    return this.appendedBytes() - ((this.meta.get(trimmedBytesKey) as number | undefined) ?? 0);
  }

  private appendedBytes(): number {
    return (this.meta.get(appendedBytesKey) as number | undefined) ?? 0;
  }

  /** Timestamp of the entry at `seq`, if retained. */
  timestampOf(seq: number): number | undefined {
    return this.entries.get(seq)?.ts;
  }

  /**
   * Appends one entry. Must run inside the LMDB write transaction that applies the mutation, so the data
   * change and its log entry commit or vanish together. Reading lastSeq inside that transaction makes
   * sequences contiguous in commit order, even when many callbacks share one transaction.
   */
  appendInTransaction(m: Mutation, ts: number): number {
    const seq = this.lastSeq() + 1;
    const cb = this.appendedBytes() + entryBytes({ key: m.key, value: m.type === 'set' ? m.value : undefined });
    const stored: StoredEntry = m.type === 'set' ? { t: 0, s: m.slot, k: m.key, v: m.value, ts, cb } : { t: 1, s: m.slot, k: m.key, ts, cb };
    this.entries.putSync(seq, stored);
    this.meta.putSync(lastSeqKey, seq);
    this.meta.putSync(appendedBytesKey, cb);
    return seq;
  }

  /**
   * Empties the log and continues it after `seq`: the next entry is seq + 1. Must run inside a write
   * transaction (a primary rebuilt from its replica takes over the replica's position).
   */
  resetInTransaction(seq: number): void {
    this.entries.clearSync();
    this.meta.putSync(lastSeqKey, seq);
    this.meta.putSync(firstSeqKey, seq + 1);
    this.meta.putSync(appendedBytesKey, 0);
    this.meta.putSync(trimmedBytesKey, 0);
  }

  /** Entries from `fromSeq` on, at most entriesMax of them and, past the first, at most bytesMax bytes. */
  read(fromSeq: number, entriesMax: number, bytesMax: number): LogEntry[] {
    const out: LogEntry[] = [];
    let bytes = 0;
    for (const { key, value } of this.entries.getRange({ start: fromSeq, limit: entriesMax })) {
      const entry = decode(key, value);
      const size = entryBytes(entry);
      if (out.length > 0 && bytes + size > bytesMax) break;
      assert.equal(entry.seq, fromSeq + out.length, 'replication log sequence is not contiguous');
      out.push(entry);
      bytes += size;
    }
    return out;
  }

  /**
   * Removes entries up to and including `throughSeq` (at most `entriesMax` of them, oldest first) in one
   * write transaction. Resolves with how many were removed.
   */
  async trim(throughSeq: number, entriesMax: number): Promise<number> {
    return this.root.transaction(() => {
      const first = this.firstSeq();
      const last = Math.min(throughSeq, this.lastSeq(), first + entriesMax - 1);
      if (last < first) return 0;
      const trimmedBytes = this.entries.get(last)?.cb;
      assert.ok(trimmedBytes !== undefined, `replication log entry ${last} is missing`);
      for (let seq = first; seq <= last; seq++) this.entries.removeSync(seq);
      this.meta.putSync(firstSeqKey, last + 1);
      this.meta.putSync(trimmedBytesKey, trimmedBytes);
      return last - first + 1;
    });
  }
}

function decode(seq: number, stored: StoredEntry): LogEntry {
  const base = { seq, slot: stored.s, key: Buffer.from(stored.k), ts: stored.ts };
  return stored.t === 0 ? { ...base, type: 'set', value: Buffer.from(stored.v ?? Buffer.alloc(0)) } : { ...base, type: 'delete' };
}
