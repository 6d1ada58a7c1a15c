// The store's part that keeps what a migration leaves: the layout the node runs with, the migration it takes part in
// with its counters, which slots are done in each direction, and tombstones for keys deleted while
// their slot was still migrating in. A migration batch is read, stored or removed here in one durable
// transaction together with that progress.

import type { LayoutRecord } from '../core/config.js';
import { slotCount } from '../core/limits.js';
import type { StoreEnvironment } from './environment.js';
import type { Standing } from './standing.js';
import { slotBound, slotEnd, storageKey, withLayoutIds, type Mutation } from './keys.js';
import { entryBytes, ReplicationLog } from './replication-log.js';

// Stored under its name from before "layout" replaced "topology", so existing data dirs keep opening.
const layoutKey = 'topology';
const migrationKey = 'migration';

/**
 * A migration this node takes part in: the layout it moves from, the one it moves to, and counters.
 * Kept until every slot this node sends or receives is done; `finishedAt` then marks it complete.
 */
export interface MigrationRecord {
  readonly previous: LayoutRecord;
  readonly layoutId: string;
  readonly startedAt: number;
  readonly finishedAt?: number;
  readonly keysSent: number;
  readonly keysReceived: number;
}

export type SlotDirection = 'in' | 'out';
const directionBit = { in: 0, out: 1 << 16 } as const;

/** One migration batch as read from the sender's store: slot-prefixed keys with values. */
export interface OutgoingChunk {
  readonly pairs: [Buffer, Buffer][];
  /** Slots whose every key is in `pairs` (or that hold none): done once the receiver has them. */
  readonly completeSlots: number[];
}

export class MigrationStore {
  constructor(
    private readonly env: StoreEnvironment,
    private readonly standing: Standing,
  ) {}

  /** The layout this store's node last ran with, if any (a record without shards is from before resize). */
  layout(): (LayoutRecord & { shardCount?: number }) | undefined {
    return withLayoutIds(this.env.meta.get(layoutKey)) as (LayoutRecord & { shardCount?: number }) | undefined;
  }

  migration(): MigrationRecord | undefined {
    return withLayoutIds(this.env.meta.get(migrationKey)) as MigrationRecord | undefined;
  }

  /**
   * Records the layout the node runs with and, when it starts a migration, the migration, in one durable
   * transaction: after a crash the node finds either both or neither.
   */
  async recordLayout(layout: LayoutRecord, migration?: MigrationRecord): Promise<void> {
    await this.env.durably(() => {
      this.env.meta.putSync(layoutKey, layout);
      if (migration) {
        this.env.migratedSlots.clearSync();
        this.env.tombstones.clearSync();
        this.env.meta.putSync(migrationKey, migration);
      }
    });
  }

  /**
   * Records a migration on a replica promoted while its old primary was migrating: replicas record no
   * migration of their own, but the slot marks replicated from the old primary stay, so the new primary
   * goes on from where the old one stood.
   */
  async adoptMigration(migration: MigrationRecord): Promise<void> {
    await this.env.durably(() => this.env.meta.putSync(migrationKey, migration));
  }

  /** The slots recorded as done in one direction of the current migration. */
  migratedSlotSet(direction: SlotDirection): Uint8Array {
    const done = new Uint8Array(slotCount);
    const bit = directionBit[direction];
    for (const key of this.env.migratedSlots.getKeys({ start: bit, end: bit + slotCount })) done[key - bit] = 1;
    return done;
  }

  /** Whether a delete of this key was recorded while its slot was migrating in. */
  hasTombstone(slot: number, key: Uint8Array): boolean {
    return this.env.tombstones.doesExist(storageKey(slot, key));
  }

  /**
   * Receiving side of a migration batch, in one durable transaction: stores each pair whose slot
   * `accepts` unless the key exists here (a newer write) or has a tombstone (a newer delete), and marks
   * `doneSlots` received, dropping their tombstones. Inserted keys go into the replication log, so the
   * batch is refused inside its transaction once the store no longer serves as a primary (see Standing):
   * the sender deletes its copy once this is acknowledged, so a key stored here unlogged would be lost
   * with a demotion. Returns how many keys were inserted.
   */
  async importMigrated(pairs: readonly [Buffer, Buffer][], doneSlots: readonly number[], accepts: (slot: number) => boolean): Promise<number> {
    const touched: string[] = [];
    const inserted = await this.env.durably(() => {
      const log = this.standing.primaryLogInTransaction('migration batch', undefined);
      if (!(log instanceof ReplicationLog)) return log;
      const ts = Date.now();
      let count = 0;
      for (const [stored, value] of pairs) {
        const slot = stored.readUInt16BE(0);
        if (!accepts(slot) || this.env.data.doesExist(stored) || this.env.tombstones.doesExist(stored)) continue;
        const m: Mutation = { type: 'set', slot, key: stored.subarray(2), value };
        this.env.applyInTransaction(m, touched);
        log.appendInTransaction(m, ts);
        count++;
      }
      for (const slot of doneSlots) {
        if (!accepts(slot)) continue;
        for (const key of this.env.tombstones.getKeys({ start: slotBound(slot), end: slotEnd(slot) })) this.env.tombstones.removeSync(key);
        this.env.migratedSlots.putSync(directionBit.in + slot, true);
      }
      this.bumpMigration('keysReceived', count);
      return count;
    }, touched);
    if (typeof inserted !== 'number') throw inserted;
    return inserted;
  }

  /**
   * Sending side: up to `entriesMax` keys (and, past the first, `bytesMax` bytes) of `slots`, in order.
   * A slot whose keys all fit is listed complete.
   */
  outgoingChunk(slots: readonly number[], entriesMax: number, bytesMax: number): OutgoingChunk {
    const pairs: [Buffer, Buffer][] = [];
    const completeSlots: number[] = [];
    let bytes = 0;
    const transaction = this.env.root.useReadTransaction();
    try {
      for (const slot of slots) {
        for (const { key, value } of this.env.data.getRange({ transaction, start: slotBound(slot), end: slotEnd(slot) })) {
          const size = entryBytes({ key, value });
          if (pairs.length >= entriesMax || (pairs.length > 0 && bytes + size > bytesMax)) return { pairs, completeSlots };
          pairs.push([Buffer.from(key), Buffer.from(value)]);
          bytes += size;
        }
        completeSlots.push(slot);
      }
      return { pairs, completeSlots };
    } finally {
      transaction.done();
    }
  }

  /**
   * After the receiver stored a batch durably: deletes the sent keys here (logged, so the replica
   * follows) and marks `completeSlots` sent, in one durable transaction. Refused once a demotion has
   * begun (see Standing): the shard's new primary still holds the keys and sends them itself.
   */
  async removeMigrated(storageKeys: readonly Buffer[], completeSlots: readonly number[]): Promise<void> {
    const touched: string[] = [];
    const refused = await this.env.durably(() => {
      const log = this.standing.primaryLogInTransaction('deletion of migrated keys', undefined);
      if (!(log instanceof ReplicationLog)) return log;
      const ts = Date.now();
      for (const stored of storageKeys) {
        const m: Mutation = { type: 'delete', slot: stored.readUInt16BE(0), key: stored.subarray(2) };
        if (this.env.data.doesExist(stored)) {
          this.env.applyInTransaction(m, touched);
          log.appendInTransaction(m, ts);
        }
      }
      for (const slot of completeSlots) this.env.migratedSlots.putSync(directionBit.out + slot, true);
      this.bumpMigration('keysSent', storageKeys.length);
      return undefined;
    }, touched);
    if (refused !== undefined) throw refused;
  }

  private bumpMigration(counter: 'keysSent' | 'keysReceived', by: number): void {
    const record = this.env.meta.get(migrationKey) as MigrationRecord | undefined;
    if (record && by > 0) this.env.meta.putSync(migrationKey, { ...record, [counter]: record[counter] + by });
  }

  /** Marks the migration finished and drops its per-slot progress and tombstones. */
  async finishMigration(finishedAt: number): Promise<void> {
    await this.env.durably(() => {
      const record = this.env.meta.get(migrationKey) as MigrationRecord | undefined;
      if (record) this.env.meta.putSync(migrationKey, { ...record, finishedAt });
      this.env.migratedSlots.clearSync();
      this.env.tombstones.clearSync();
    });
  }
}
