// What the client decides before it sends a set: which values go in the query (small, valid UTF-8) and
// which in the body, and that the query form decodes back to the same bytes the way the node decodes it.
import { describe, expect, it } from 'vitest';
import { queryValueBytesMax, valueBytesOf, valueParam } from '../../src/client/checks.js';
import { parseQuery } from '../../src/core/data-request.js';

/** The value a node takes from the parameter: the query decoded as the node does, as UTF-8 bytes. */
const nodeReads = (param: string) => Buffer.from(parseQuery(param.slice(1)).get('value')!, 'utf8');

describe('valueParam', () => {
  it('puts small values of valid UTF-8 in the query, and they decode to the same bytes', () => {
    const texts = ['', 'plain', 'a&b=c+d %20 e', 'ключ 键 🔑', '\u0000\u0001 control', 'x'.repeat(queryValueBytesMax)];
    for (const text of texts) {
      const bytes = valueBytesOf(text);
      const param = valueParam(bytes);
      expect(param, text).toBeDefined();
      expect(nodeReads(param!).equals(bytes), text).toBe(true);
    }
  });

  it('leaves larger values and bytes that are not UTF-8 to the body', () => {
    expect(valueParam(valueBytesOf('x'.repeat(queryValueBytesMax + 1)))).toBeUndefined();
    expect(valueParam(Buffer.from([0x61, 0xff, 0x62]))).toBeUndefined();
    expect(valueParam(Buffer.from([0xed, 0xa0, 0x80]))).toBeUndefined(); // an encoded lone surrogate
    expect(valueParam(Buffer.from(Array.from({ length: 256 }, (_, i) => i)))).toBeUndefined();
    // A lone surrogate in a string is stored as U+FFFD, as Buffer.from makes it, whichever way it goes.
    const lone = valueBytesOf('a\ud800b');
    expect(nodeReads(valueParam(lone)!).equals(lone)).toBe(true);
  });
});
