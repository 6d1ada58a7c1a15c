// Query strings are decoded strictly, and forwarded requests are re-encoded so that every key and value
// survives the trip byte for byte.
import { describe, expect, it } from 'vitest';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { BodyBudget, encodeDataPath, parseDataRequest, parseQuery, splitUrl, type DataRequest, type ParseContext } from '../../src/core/data-request.js';
import { BadRequestError, MethodNotAllowedError } from '../../src/core/errors.js';

/** The parts of a node:http request that parseDataRequest reads for a GET. */
function getRequest(rawHeaders: string[] = ['Host', '127.0.0.1'], method = 'GET'): IncomingMessage {
  return { method, rawHeaders, httpVersionMajor: 1, httpVersionMinor: 1 } as unknown as IncomingMessage;
}

const token = 'unit-test-cluster-token';
const context: ParseContext = { isClusterToken: (value) => value === token, budget: new BodyBudget(1024) };
const res = {} as ServerResponse;
const parse = (req: IncomingMessage, path: string, query: string) => parseDataRequest(req, res, path, query, context) as DataRequest;

describe('parseQuery', () => {
  it('decodes percent-escapes and plus as space', () => {
    expect(parseQuery('key=a%26b%3Dc&value=x+y%20z')).toEqual(
      new Map([
        ['key', 'a&b=c'],
        ['value', 'x y z'],
      ]),
    );
  });

  it('treats a bare name as an empty value and skips empty parts', () => {
    expect(parseQuery('key&&value=')).toEqual(
      new Map([
        ['key', ''],
        ['value', ''],
      ]),
    );
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
    expect(parseQuery(query)).toEqual(
      new Map([
        ['key', 'a&b=c %2F+ключ🔑'],
        ['value', 'v&=?# ü'],
        ['ack', 'replica'],
      ]),
    );
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
    const req = parse(getRequest(), path(extra), query);
    expect(req.keyText).toBe(keyText);
    expect(req.key.equals(Buffer.from(keyText, 'utf8'))).toBe(true);
    expect([...req.extra]).toEqual(extra);
    expect(req.forwarded).toBeUndefined();
  });

  it.each(['key=', 'kez=a', '', 'key=a&key=b', 'key=%FF', 'key=a&value=b', 'key=a&ack=replica'])('rejects %j on /get with 400', (query) => {
    expect(() => parse(getRequest(), '/get', query)).toThrow(BadRequestError);
  });

  it.each([
    ['/set', 'key=a&value=b&ttl=1', 'ttl'],
    ['/set', 'key=a&value=b&ak=replica', 'ak'],
    ['/delete', 'key=a&value=b', 'value'],
  ])('names the unknown parameter of %s?%s', (path, query, name) => {
    expect(() => parse(getRequest(), path, query)).toThrow(`unknown parameter "${name}"`);
  });

  it('takes HEAD on /get only', () => {
    expect(parse(getRequest(undefined, 'HEAD'), '/get', 'key=k').method).toBe('HEAD');
    expect(() => parse(getRequest(undefined, 'HEAD'), '/set', 'key=k&value=v')).toThrow(MethodNotAllowedError);
  });

  it('refuses an HTTP/1.1 request without Host', () => {
    expect(() => parse(getRequest([]), '/get', 'key=k')).toThrow('Host');
  });

  it('reads the forwarding marks from the raw headers, whatever their case, with the cluster token', () => {
    const req = parse(
      getRequest(['Host', 'h', 'X-Kv-Forwarded-By', 'shard2/primary', 'x-kv-layout', '0123456789ab', 'X-KV-PREVIOUS-OWNER-READ', '1', 'X-Kv-Token', token]),
      '/get',
      'key=k',
    );
    expect(req.forwarded).toEqual({ by: 'shard2/primary', layoutId: '0123456789ab' });
    expect(req.previousOwnerRead).toBe(true);
  });

  it.each([
    ['no token', ['X-Kv-Forwarded-By', 'shard2/primary']],
    ['a wrong token', ['X-Kv-Forwarded-By', 'shard2/primary', 'X-Kv-Token', 'guess']],
    ['a previous-owner mark alone', ['X-Kv-Previous-Owner-Read', '1']],
    ['a malformed sender', ['X-Kv-Forwarded-By', '<b>', 'X-Kv-Token', token]],
    ['a malformed layout', ['X-Kv-Forwarded-By', 'shard2/primary', 'X-Kv-Layout', 'abc', 'X-Kv-Token', token]],
  ])('refuses the internal marks with %s', (_name, headers) => {
    expect(() => parse(getRequest(['Host', 'h', ...headers]), '/get', 'key=k')).toThrow(BadRequestError);
  });
});

function path(extra: string[][]): string {
  return extra.length > 0 ? '/delete' : '/get';
}
