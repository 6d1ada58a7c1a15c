// Real stores in temporary data dirs for tests of the store alone: each file's stores are closed and
// their dirs removed after every test.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'vitest';
import { Store } from '../../src/storage/store.js';

/** Registers the cleanup and returns the opener: a store for `member`'s data dir, a primary's or a replica's. */
export function useTempStores(prefix: string): (member: 'a' | 'b') => Promise<Store> {
  const dirs: string[] = [];
  const stores: Store[] = [];
  afterEach(async () => {
    for (const store of stores.splice(0)) await store.close();
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });
  return async (member) => {
    const dir = mkdtempSync(join(tmpdir(), `kvshard-${prefix}-`));
    dirs.push(dir);
    const store = new Store({ path: join(dir, `shard1-${member}`), replicationLog: member === 'a' });
    stores.push(store);
    // A primary's store starts a dataset before it takes writes, as a new shard's does.
    if (member === 'a') await store.dataset.startDataset();
    return store;
  };
}
