// A demoted primary writes its rollback file, on a real store in a temporary data dir, and the file must
// survive a crash of the machine right after: the file's bytes are synced, and so is the directory
// entry that names it (a file's fsync does not make its name durable). fsync is watched, passing through
// to the real one, to see which paths were synced; the rollback dir holds only the complete file.
import { mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';

const synced = vi.hoisted(() => [] as string[]);

vi.mock('node:fs', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs')>();
  const fsyncSync = (fd: number) => {
    synced.push(fs.readlinkSync(`/proc/self/fd/${fd}`));
    fs.fsyncSync(fd);
  };
  return { ...fs, default: { ...fs, fsyncSync }, fsyncSync };
});

const { writeRollback } = await import('../../src/replication/rollback.js');
const { Store } = await import('../../src/storage/store.js');

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe('a rollback file', () => {
  it('is synced with the directory that names it, and only the complete file is in that directory', async () => {
    const dir = realpathSync(mkdtempSync(join(tmpdir(), 'kvshard-rollback-')));
    dirs.push(dir);
    const store = new Store({ path: join(dir, 'shard1-a'), replicationLog: true });
    try {
      await store.dataset.startDataset();
      await store.commit([{ type: 'set', slot: 1, key: Buffer.from('kept'), value: Buffer.from('1') }], 1);
      await store.commit([{ type: 'set', slot: 1, key: Buffer.from('lost'), value: Buffer.from('2') }], 1);
      const demoted = await store.failover.demote();
      synced.length = 0;
      const { file, entries } = await writeRollback(store, 'shard1', demoted, 1, '127.0.0.1:1');
      expect(entries).toBe(1);
      const rollbackDir = join(store.path, 'rollback');
      expect(readdirSync(rollbackDir)).toEqual([file.slice(rollbackDir.length + 1)]);
      const lines = readFileSync(file, 'utf8').trim().split('\n');
      expect(JSON.parse(lines[1]!)).toMatchObject({ seq: 2, op: 'set', key: 'lost' });
      // The file's bytes first, then the directory that names it, then the data dir that names a rollback
      // dir made just now.
      expect(synced.at(-2)).toBe(rollbackDir);
      expect(synced.at(-1)).toBe(store.path);
      expect(synced.slice(0, -2).some((path) => path.startsWith(`${rollbackDir}/`))).toBe(true);
    } finally {
      await store.close();
    }
  });
});
