// The LMDB environment of one process: the shard's data plus its metadata.
//
// Keys are stored behind their slot as two big-endian bytes, so one slot's keys form one contiguous
// range (migration moves a slot at a time by scanning that range). Values are raw bytes.

import { mkdirSync } from 'node:fs';
import { open, type Database, type RootDatabase } from 'lmdb';

export type Mutation =
  | { readonly type: 'set'; readonly slot: number; readonly key: Buffer; readonly value: Buffer }
  | { readonly type: 'delete'; readonly slot: number; readonly key: Buffer };

/** The slot-prefixed LMDB key of a user key. */
export function storageKey(slot: number, key: Uint8Array): Buffer {
  const stored = Buffer.allocUnsafe(2 + key.length);
  stored.writeUInt16BE(slot, 0);
  stored.set(key, 2);
  return stored;
}

export class Store {
  private readonly root: RootDatabase;
  private readonly data: Database<Buffer, Buffer>;
  private closed = false;

  constructor(readonly path: string) {
    mkdirSync(path, { recursive: true });
    // Options are spelled out rather than left to lmdb-js defaults because they decide durability:
    // overlappingSync lets the fsync of one commit overlap the next transaction, and every write is
    // acknowledged only after `flushed` resolves (see commit()), so nothing acknowledged can be lost.
    this.root = open({
      path,
      maxDbs: 8,
      compression: false,
      overlappingSync: true,
      noSync: false,
      noMetaSync: false,
      useWritemap: false,
      eventTurnBatching: true,
      commitDelay: 0,
    });
    this.data = this.root.openDB<Buffer, Buffer>('data', { keyEncoding: 'binary', encoding: 'binary' });
  }

  get(slot: number, key: Uint8Array): Buffer | undefined {
    return this.data.get(storageKey(slot, key));
  }

  /**
   * Applies mutations atomically, in order, in one LMDB transaction, and resolves once that transaction
   * is durable on disk. lmdb-js groups every transaction queued in the same event turn into one commit
   * and one fsync, so concurrent clients share the cost of a sync (group commit).
   * Resolves with what each mutation did: for a delete, whether the key existed.
   */
  async commit(mutations: readonly Mutation[]): Promise<boolean[]> {
    const results = await this.root.transaction(() => mutations.map((m) => this.applyInTransaction(m)));
    // The transaction promise resolves at commit, when the write is visible and survives a crash of
    // this process. With overlappingSync the fsync comes after; `flushed` resolves once it has, which is
    // when the write survives a crash of the machine. Acknowledge only then.
    await this.root.flushed;
    return results;
  }

  private applyInTransaction(m: Mutation): boolean {
    const key = storageKey(m.slot, m.key);
    if (m.type === 'set') {
      this.data.putSync(key, m.value);
      return true;
    }
    return this.data.removeSync(key);
  }

  /** Number of keys held. */
  count(): number {
    return this.data.getCount();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.root.flushed;
    await this.root.close();
  }
}
