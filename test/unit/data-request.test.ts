// Query strings are decoded strictly, and forwarded requests are re-encoded so that every key and value
// survives the trip byte for byte.
import { describe, expect, it } from 'vitest';
import { encodeDataPath, parseQuery, splitUrl, type DataRequest } from '../../src/data-request.js';
import { BadRequestError } from '../../src/errors.js';

describe('parseQuery', () => {
  it('decodes percent-escapes and plus as space', () => {
    expect(parseQuery('key=a%26b%3Dc&value=x+y%20z')).toEqual(new Map([['key', 'a&b=c'], ['value', 'x y z']]));
  });

  it('treats a bare name as an empty value and skips empty parts', () => {
    expect(parseQuery('key&&value=')).toEqual(new Map([['key', ''], ['value', '']]));
  });

  it.each(['key=%', 'key=%G0', 'key=%C3', 'key=%FF', 'a=1&a=2'])('rejects %j', (query) => {
    expect(() => parseQuery(query)).toThrow(BadRequestError);
  });
});

describe('encodeDataPath', () => {
  it('round-trips awkward keys and values through parseQuery', () => {
    const req = {
      op: 'set',
      keyText: 'a&b=c %2F+ключ🔑',
      value: Buffer.from('v&=?# ü', 'utf8'),
      valueInBody: false,
      extra: new Map([['ack', 'replica']]),
    } as unknown as DataRequest;
    const { path, query } = splitUrl(encodeDataPath(req));
    expect(path).toBe('/set');
    expect(parseQuery(query)).toEqual(new Map([['key', 'a&b=c %2F+ключ🔑'], ['value', 'v&=?# ü'], ['ack', 'replica']]));
  });

  it('leaves a body value out of the query', () => {
    const req = { op: 'set', keyText: 'k', value: Buffer.from([0, 255]), valueInBody: true, extra: new Map() } as unknown as DataRequest;
    expect(encodeDataPath(req)).toBe('/set?key=k');
  });
});
