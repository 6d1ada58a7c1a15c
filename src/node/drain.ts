// A drain's data dirs: the shard a drain runs, read from its data dir, and where its dirs go once every
// key has moved to the shards that own them now.

import { existsSync, mkdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, type ShardConfig } from '../core/config.js';
import type { Log } from '../core/log.js';
import { DataDirLock } from '../storage/data-dir-lock.js';
import { Store } from '../storage/store.js';
import { memberDirNames } from './member-dirs.js';
import { nodeDataPath } from './node.js';

/**
 * Locks the data dir of shard `name`'s primary in `dataDir` and reads the shard as that dir last knew
 * it, for a drain: the lock is passed on to start().
 */
export async function drainedShard(dataDir: string, name: string, log?: Log): Promise<{ shard: ShardConfig; lock: DataDirLock }> {
  const path = nodeDataPath(dataDir, name, 'drain', log);
  if (!existsSync(path)) throw new ConfigError([`${path}: no such data dir: there is nothing of ${name} to drain`]);
  const lock = await DataDirLock.acquire(path, `kvshard drain of ${name}`);
  try {
    const store = new Store({ path, replicationLog: true });
    try {
      const migration = store.migrations.migration();
      const layout = migration && migration.finishedAt === undefined ? migration.previous : store.migrations.layout();
      const shard = layout?.shards?.find((s) => s.name === name);
      if (!shard) throw new ConfigError([`${path}: holds no layout that names ${name}: there is nothing to drain`]);
      // A drain sends this member's data. After a failover made it a replica, the other member holds
      // the shard's latest writes, and draining from here could leave some behind.
      if (store.failover.servesAs() === 'replica') {
        throw new ConfigError([
          `${path}: this member of ${name} serves as replica since a failover, so it may lack the last writes: put ${name} back in the config, ` +
            `run ./launch.sh failover ${name} so that the member at ${shard.address} is primary again, then remove ${name}`,
        ]);
      }
      return { shard, lock };
    } finally {
      await store.close();
    }
  } catch (err) {
    await lock.release();
    throw err;
  }
}

/** Moves a drained shard's data dirs under `dataDir`/retired/ (kept, not deleted); returns where. */
export function retire(dataDir: string, name: string): string {
  const retired = join(dataDir, 'retired', `${name}-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  mkdirSync(retired, { recursive: true, mode: 0o700 });
  for (const dir of memberDirNames(name)) {
    const path = join(dataDir, dir);
    if (existsSync(path)) renameSync(path, join(retired, dir));
  }
  return retired;
}
