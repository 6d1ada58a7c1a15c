// Where a member of a shard keeps its data: `<data dir>/<shard>-a` for the member at the shard's
// `address` in the config, `<shard>-b` for the one at `replica`. Members are named by their place in the
// config, not by their role, since a failover swaps the roles. Earlier versions named the two dirs
// `<shard>-primary` and `<shard>-replica`; such a dir is renamed on its member's first start (a rename
// keeps the dir's inode, so a process still running on it keeps its lock and the start is refused).

import { existsSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import type { Log } from '../core/log.js';

/** A member of a shard: `a` at the config's `address`, `b` at its `replica`. */
export type MemberName = 'a' | 'b';

/** The names earlier versions gave the members' data dirs. */
const legacyDirNames: Readonly<Record<MemberName, string>> = { a: 'primary', b: 'replica' };

/**
 * The data dir of `member` of `shard` under `dataDir`, after moving an earlier version's dir of that
 * member into place (reported through `log`).
 */
export function memberDataPath(dataDir: string, shard: string, member: MemberName, log?: Log): string {
  const path = join(dataDir, `${shard}-${member}`);
  const legacy = join(dataDir, `${shard}-${legacyDirNames[member]}`);
  if (!existsSync(path) && existsSync(legacy)) {
    renameSync(legacy, path);
    log?.info(`renamed ${legacy} to ${path}: data dirs name a member by its place in the config, since its role can change`);
  }
  return path;
}

/** The names of both members' data dirs in `dataDir`, the earlier versions' included: what a retired shard moves. */
export function memberDirNames(shard: string): string[] {
  return (['a', 'b'] as const).flatMap((m) => [`${shard}-${m}`, `${shard}-${legacyDirNames[m]}`]);
}
