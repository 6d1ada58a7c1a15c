// A demoted primary's writes that its successor never received (possible only after a forced failover,
// for `ack=primary` writes in the replication lag window) are neither dropped nor merged: before the
// resync from the new primary replaces its data, the member writes them to
// `<its LMDB dir>/rollback/<time>.jsonl`, as MongoDB writes its rollback files. The format is documented
// in docs/failover.md: a header line, then one line per write in sequence order.

import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { DemotedAt } from '../storage/failover-store.js';
import type { Store } from '../storage/store.js';

/** Entries read from the log per step, so a long lag window is written in bounded pieces. */
const rollbackReadEntries = 1000;

export interface RollbackHeader {
  readonly kvshard_rollback: 1;
  readonly shard: string;
  /** The dataset this member wrote as primary, and the sequence its successor branched off it at. */
  readonly dataset_id: string;
  readonly branch_seq: number;
  /** The last sequence this member wrote as primary. */
  readonly last_seq: number;
  /** Writes past branch_seq the log no longer held (0 unless the log was trimmed past them). */
  readonly missing: number;
  readonly new_primary: string;
  readonly written_at: string;
}

/**
 * Writes the entries of `demoted` past `branchSeq` to a new rollback file, flushed to disk, and counts
 * it in the store. Returns the file and how many writes it holds.
 *
 * The file is written under a `.partial` name and renamed once complete, so the rollback dir holds only
 * whole files. A file's own fsync does not make its name durable: after the rename the directory is
 * synced too (and its parent, when the rollback dir was just made), or a crash of the machine could
 * lose the file after the resync has replaced the data it holds.
 */
export async function writeRollback(
  store: Store,
  shard: string,
  demoted: DemotedAt,
  branchSeq: number,
  newPrimary: string,
): Promise<{ file: string; entries: number }> {
  const dir = join(store.path, 'rollback');
  const created = mkdirSync(dir, { recursive: true, mode: 0o700 });
  const at = new Date();
  const file = join(dir, `${at.toISOString().replace(/[:.]/g, '-')}.jsonl`);
  const partial = `${file}.partial`;
  const first = Math.max(branchSeq + 1, store.failover.logFirstSeq());
  const header: RollbackHeader = {
    kvshard_rollback: 1,
    shard,
    dataset_id: demoted.datasetId,
    branch_seq: branchSeq,
    last_seq: demoted.seq,
    missing: Math.max(0, first - (branchSeq + 1)),
    new_primary: newPrimary,
    written_at: at.toISOString(),
  };
  const fd = openSync(partial, 'wx', 0o600);
  let entries = 0;
  try {
    writeSync(fd, `${JSON.stringify(header)}\n`);
    for (let from = first; from <= demoted.seq; ) {
      const batch = store.failover.writesPast(from, rollbackReadEntries).filter((e) => e.seq <= demoted.seq);
      if (batch.length === 0) break;
      const lines = batch.map((e) =>
        JSON.stringify({
          seq: e.seq,
          op: e.type,
          key: e.key.toString('utf8'),
          ...(e.type === 'set' ? { value_base64: e.value!.toString('base64') } : {}),
          time: new Date(e.ts).toISOString(),
        }),
      );
      writeSync(fd, `${lines.join('\n')}\n`);
      entries += batch.length;
      from = batch.at(-1)!.seq + 1;
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(partial, file);
  syncDir(dir);
  if (created !== undefined) syncDir(dirname(dir));
  await store.failover.recordRollback(file, entries);
  return { file, entries };
}

/** Makes the names in directory `path` durable (a new or renamed file's entry). */
function syncDir(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
