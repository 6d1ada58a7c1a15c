// The start-up layout decision: from the layout a store last ran with, the migration it records and the
// config a node starts with, what the node does before it serves. A pure function, so that every
// situation is a line of a unit test; node.ts reads the store, writes what is decided and throws a refusal.
//
// A primary (or a drain) whose layout changed records a migration from the old layout before it serves
// anything; a migration still under way must finish before the layout may change again. A replica
// follows its primary's layout and only records the config's. A primary with no layout of its own in a
// cluster of several shards (a shard just added) learns from its peers whether keys move to it.

import type { Config, LayoutRecord, RoleName, ShardConfig } from '../core/config.js';
import type { MigrationRecord } from '../storage/migration-store.js';

/** The layout a store last ran with; one written before online resize existed has no shard list. */
export interface StoredLayout {
  readonly layoutId: string;
  readonly shards?: readonly ShardConfig[];
}

export interface LayoutStartFacts {
  readonly config: Pick<Config, 'file' | 'layoutId' | 'shards'>;
  /** This node's shard name. */
  readonly name: string;
  readonly role: RoleName;
  /** The store's path, named in refusals. */
  readonly path: string;
  readonly stored: StoredLayout | undefined;
  /** The migration the store records, under way or finished. */
  readonly migration: MigrationRecord | undefined;
  /** When a migration recorded now starts. */
  readonly now: number;
}

/**
 * What the node does: start with what the store holds; record the config's layout first (keeping the
 * migration record, if any); record the layout together with a migration that starts now; start without
 * a layout and learn it from peers; or refuse to start, with a message that names the file.
 */
export type LayoutStart =
  | { readonly kind: 'start-as-is'; readonly record: MigrationRecord | undefined }
  | { readonly kind: 'record-layout'; readonly record: MigrationRecord | undefined }
  | { readonly kind: 'start-migration'; readonly record: MigrationRecord }
  | { readonly kind: 'learn-from-peers' }
  | { readonly kind: 'refuse'; readonly message: string };

/** The record of a migration that starts at `now`, from the layout `previous` to the one `layoutId` names. */
export function newMigration(previous: LayoutRecord, layoutId: string, now: number): MigrationRecord {
  return { previous, layoutId, startedAt: now, keysSent: 0, keysReceived: 0 };
}

/** Decides what a starting node does with its stored layout (see LayoutStart). */
export function decideLayoutStart(facts: LayoutStartFacts): LayoutStart {
  const { config, name, role, path, stored, migration, now } = facts;
  if (migration && migration.finishedAt === undefined) {
    if (migration.layoutId === config.layoutId) return { kind: 'start-as-is', record: migration };
    return {
      kind: 'refuse',
      message:
        `${config.file}: shards: ${name} (${path}) is still moving keys from layout ${migration.previous.layoutId} to ` +
        `${migration.layoutId}, and this config is a third layout (${config.layoutId}); start with the config of ` +
        `${migration.layoutId} until its /status shows the migration done, then change the layout again`,
    };
  }
  if (stored && !stored.shards && stored.layoutId !== config.layoutId) {
    return { kind: 'refuse', message: `${config.file}: shards: ${path} was written by a kvshard without online resize; start it with its old config` };
  }
  if (role === 'drain') {
    if (!stored?.shards?.some((s) => s.name === name)) {
      return { kind: 'refuse', message: `${path}: holds no layout that names ${name}: there is nothing to drain` };
    }
    return { kind: 'start-migration', record: newMigration(stored as LayoutRecord, config.layoutId, now) };
  }
  if (!stored) {
    if (role === 'replica' || config.shards.length === 1) return { kind: 'record-layout', record: undefined };
    return { kind: 'learn-from-peers' };
  }
  if (stored.layoutId === config.layoutId || role === 'replica') {
    // Also upgrades a record without the shard list (written before online resize existed).
    if (stored.layoutId !== config.layoutId || !stored.shards) return { kind: 'record-layout', record: migration };
    return { kind: 'start-as-is', record: migration };
  }
  return { kind: 'start-migration', record: newMigration(stored as LayoutRecord, config.layoutId, now) };
}
