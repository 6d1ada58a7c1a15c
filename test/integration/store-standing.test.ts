// Whether a store serves as its shard's primary, and at which epoch, is read inside each write's own
// transaction, on a real store in a temporary data dir. A write queued before a demotion commits and is
// logged; one queued after it, in the same event turn, stores nothing. A write admitted at an epoch the
// store no longer serves at (its primary was raised to a newer epoch meanwhile) stores nothing either.
import { describe, expect, it } from 'vitest';
import { KvError } from '../../src/core/errors.js';
import { useTempStores } from '../helpers/store.js';

const openStore = useTempStores('standing');
const primaryStore = () => openStore('a');

const set = (key: string) => ({ type: 'set' as const, slot: 3, key: Buffer.from(key), value: Buffer.from('v') });

function expectNotServing(refused: unknown): void {
  expect(refused).toBeInstanceOf(KvError);
  expect((refused as KvError).toJSON()).toMatchObject({ error: 'not_serving_primary', retriable: true });
}

describe("a store's standing, read inside each write's transaction", () => {
  it('commits a write queued before a demotion and refuses one queued after it', async () => {
    const store = await primaryStore();
    const before = store.commit([set('before')], 1);
    const demoted = store.failover.demote();
    const after = store.commit([set('after')], 1).catch((err: unknown) => err);
    expect((await before).seq).toBe(1);
    expect((await demoted).seq).toBe(1);
    expectNotServing(await after);
    expect(store.get(3, Buffer.from('before'))?.toString()).toBe('v');
    expect(store.get(3, Buffer.from('after'))).toBeUndefined();
    expect(store.standing.now).toEqual({ role: 'replica' });
  });

  it('refuses a write admitted at an epoch the primary no longer serves at', async () => {
    const store = await primaryStore();
    const stale = store.commit([set('stale')], 1);
    const raised = store.failover.raise(2);
    const late = store.commit([set('late')], 1).catch((err: unknown) => err);
    expect((await stale).seq).toBe(1);
    await raised;
    const refused = await late;
    expectNotServing(refused);
    expect((refused as KvError).toJSON()).toMatchObject({ epoch: 2 });
    expect((await store.commit([set('current')], 2)).seq).toBe(2);
    expect(store.dataset.datasetEpoch()).toBe(2);
    expect(store.count()).toBe(2);
  });

  it('serves as primary at the epoch it was promoted at, from the promotion on', async () => {
    const store = await openStore('b');
    expectNotServing(await store.commit([set('early')], 1).catch((err: unknown) => err));
    await store.failover.promote(3);
    expect(store.standing.now).toEqual({ role: 'primary', epoch: 3 });
    expect((await store.commit([set('promoted')], 3)).seq).toBe(1);
    expect(store.count()).toBe(1);
  });
});
