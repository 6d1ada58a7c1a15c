// A migration batch meets a demotion, on a real store in a temporary data dir. A primary's store takes a
// batch of migrated keys (or deletes keys it has sent) and, before that transaction commits, a failover
// demotes it. The batch is acknowledged either way, so the sender deletes its copy: the keys must be in
// the demoted primary's log, where the rollback of writes its successor lacks reads them. A batch that
// arrives once the demotion has begun is refused, and nothing of it is stored.
import { describe, expect, it } from 'vitest';
import { KvError } from '../../src/core/errors.js';
import { storageKey } from '../../src/storage/keys.js';
import { useTempStores } from '../helpers/store.js';

const openStore = useTempStores('demotion');
const primaryStore = () => openStore('a');

const pair = (slot: number, key: string, value: string): [Buffer, Buffer] => [storageKey(slot, Buffer.from(key)), Buffer.from(value)];
const everySlot = () => true;

describe('a migration batch during a demotion', () => {
  it('logs a batch stored just before the demotion, so the demoted history holds its keys', async () => {
    const store = await primaryStore();
    await store.commit([{ type: 'set', slot: 7, key: Buffer.from('before'), value: Buffer.from('0') }], 1);
    // Both are queued in the same event turn: the batch first, then the demotion.
    const imported = store.migrations.importMigrated([pair(42, 'moved-1', 'a'), pair(42, 'moved-2', 'b')], [42], everySlot);
    const demoted = store.failover.demote();
    expect(await imported).toBe(2);
    const at = await demoted;
    expect(at.seq).toBe(3);
    const logged = store.failover.writesPast(2, 10).map((e) => [e.seq, e.type, e.key.toString()]);
    expect(logged).toEqual([
      [2, 'set', 'moved-1'],
      [3, 'set', 'moved-2'],
    ]);
  });

  it('logs the deletes of keys sent just before the demotion', async () => {
    const store = await primaryStore();
    await store.commit([{ type: 'set', slot: 9, key: Buffer.from('sent'), value: Buffer.from('x') }], 1);
    const removed = store.migrations.removeMigrated([storageKey(9, Buffer.from('sent'))], [9]);
    const demoted = store.failover.demote();
    await removed;
    expect((await demoted).seq).toBe(2);
    expect(store.failover.writesPast(2, 10).map((e) => [e.type, e.key.toString()])).toEqual([['delete', 'sent']]);
  });

  it('refuses a batch that arrives once the demotion has begun, storing none of it', async () => {
    const store = await primaryStore();
    const demoted = store.failover.demote();
    const refused = await store.migrations.importMigrated([pair(42, 'late', 'c')], [42], everySlot).catch((err: unknown) => err);
    await demoted;
    expect(refused).toBeInstanceOf(KvError);
    expect((refused as KvError).toJSON()).toMatchObject({ error: 'not_serving_primary', retriable: true });
    expect((refused as KvError).status).toBe(503);
    expect(store.count()).toBe(0);
    expect(store.migrations.migratedSlotSet('in')[42]).toBe(0);
  });
});
