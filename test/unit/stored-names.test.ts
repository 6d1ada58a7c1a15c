// Records in data dirs written before "layout" replaced "topology" in kvshard's vocabulary name their
// layout ids topologyId; they are read under the current name.
import { describe, expect, it } from 'vitest';
import { withLayoutIds } from '../../src/storage/keys.js';

describe('withLayoutIds', () => {
  it.each([
    { name: 'an old layout record', stored: { topologyId: 'aaa', shards: [] }, read: { layoutId: 'aaa' } },
    {
      name: 'an old migration record and its previous layout',
      stored: { topologyId: 'bbb', previous: { topologyId: 'aaa' } },
      read: { layoutId: 'bbb', previous: { layoutId: 'aaa' } },
    },
    { name: 'a current record', stored: { layoutId: 'ccc' }, read: { layoutId: 'ccc' } },
    { name: 'a flag from a build that kept a boolean', stored: true, read: true },
  ])('reads $name', ({ stored, read }) => {
    expect(withLayoutIds(structuredClone(stored))).toMatchObject(read as object);
  });

  it('leaves nothing stored unread', () => {
    expect(withLayoutIds(undefined)).toBeUndefined();
  });
});
