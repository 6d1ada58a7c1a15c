// The read cache is bounded by entries and by value size, evicts the oldest entry first, and forgets
// keys on request.
import { describe, expect, it } from 'vitest';
import { ReadCache } from '../../src/storage/read-cache.js';

describe('ReadCache', () => {
  it('keeps at most entriesMax values, evicting the oldest inserted', () => {
    const cache = new ReadCache(2, 10);
    cache.remember('a', Buffer.from('1'));
    cache.remember('b', Buffer.from('2'));
    cache.remember('c', Buffer.from('3'));
    expect(cache.size).toBe(2);
    expect(cache.get('a')).toBeUndefined();
    expect(cache.get('b')?.toString()).toBe('2');
    expect(cache.get('c')?.toString()).toBe('3');
  });

  it('does not cache values over valueBytesMax', () => {
    const cache = new ReadCache(10, 4);
    cache.remember('big', Buffer.alloc(5));
    cache.remember('small', Buffer.alloc(4));
    expect(cache.get('big')).toBeUndefined();
    expect(cache.get('small')?.length).toBe(4);
  });

  it('replaces a value without evicting others, and forgets and clears', () => {
    const cache = new ReadCache(2, 10);
    cache.remember('a', Buffer.from('1'));
    cache.remember('b', Buffer.from('2'));
    cache.remember('a', Buffer.from('9'));
    expect(cache.get('a')?.toString()).toBe('9');
    expect(cache.get('b')?.toString()).toBe('2');
    cache.forget('a');
    expect(cache.get('a')).toBeUndefined();
    cache.clear();
    expect(cache.size).toBe(0);
  });
});
