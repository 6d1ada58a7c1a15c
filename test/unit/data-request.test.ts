// Query strings are decoded strictly, and forwarded requests are re-encoded so that every key and value
// survives the trip byte for byte.
import { describe, expect, it } from 'vitest';
import type { IncomingMessage } from 'node:http';
import { encodeDataPath, parseDataRequest, parseQuery, splitUrl, type DataRequest } from '../../src/data-request.js';
import { BadRequestError } from '../../src/errors.js';

/** The parts of a node:http request that parseDataRequest reads for a GET. */
function getRequest(rawHeaders: string[] = ['Host', '127.0.0.1']): IncomingMessage {
  return { method: 'GET', rawHeaders } as unknown as IncomingMessage;
}

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

describe('parseDataRequest', () => {
  // A query of `key=<text>` alone skips the general parser; both must read every query alike.
  it.each([
    ['key=abc', 'abc', []],
    ['key=a=b', 'a=b', []],
    ['key=a%20b', 'a b', []],
    ['key=a+b', 'a b', []],
    ['key=%7Bt1%7D.x', '{t1}.x', []],
    ['key=k&ack=replica', 'k', [['ack', 'replica']]],
    ['ack=replica&key=k', 'k', [['ack', 'replica']]],
  ])('reads %j', (query, keyText, extra) => {
    const req = parseDataRequest(getRequest(), '/get', query) as DataRequest;
    expect(req.keyText).toBe(keyText);
    expect(req.key.equals(Buffer.from(keyText, 'utf8'))).toBe(true);
    expect([...req.extra]).toEqual(extra);
    expect(req.forwarded).toBeUndefined();
  });

  it.each(['key=', 'kez=a', '', 'key=a&key=b', 'key=%FF'])('rejects %j with 400', (query) => {
    expect(() => parseDataRequest(getRequest(), '/get', query)).toThrow(BadRequestError);
  });

  it('reads the forwarding marks from the raw headers, whatever their case', () => {
    const req = parseDataRequest(
      getRequest(['Host', 'h', 'X-Kv-Forwarded-By', 'shard2/primary', 'x-kv-topology', 'abc', 'X-KV-PREVIOUS-OWNER-READ', '1']),
      '/get',
      'key=k',
    ) as DataRequest;
    expect(req.forwarded).toEqual({ by: 'shard2/primary', topologyId: 'abc' });
    expect(req.previousOwnerRead).toBe(true);
  });

  it('ignores a previous-owner mark on a request that was not forwarded', () => {
    const req = parseDataRequest(getRequest(['X-Kv-Previous-Owner-Read', '1']), '/get', 'key=k') as DataRequest;
    expect(req.forwarded).toBeUndefined();
    expect(req.previousOwnerRead).toBe(false);
  });
});
