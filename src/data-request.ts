// Parsing and validating the data routes' requests (/get, /set, /delete) from a raw node:http request.
// Query strings are decoded strictly: a malformed percent-escape or invalid UTF-8 is a 400, never a guess.

import type { IncomingMessage } from 'node:http';
import { BadRequestError, MethodNotAllowedError, PayloadTooLargeError } from './errors.js';
import { keyBytesMax, valueBytesMax } from './limits.js';
import { keySlot } from './slots.js';

export type DataOp = 'get' | 'set' | 'delete';

/** Headers that mark a request forwarded by another node, so it is never forwarded again. */
export const forwardedByHeader = 'x-kv-forwarded-by';
export const forwardedTopologyHeader = 'x-kv-topology';
/**
 * Marks a read sent by a key's new owner to its previous owner during a migration: the previous owner
 * answers from its own data although its config no longer assigns it the key.
 */
export const previousOwnerReadHeader = 'x-kv-previous-owner-read';

export interface ForwardMarker {
  /** `<shard>/<role>` of the node that forwarded the request. */
  readonly by: string;
  /** The sender's config topologyId. */
  readonly topologyId: string;
}

export interface DataRequest {
  readonly op: DataOp;
  readonly method: 'GET' | 'POST';
  /** The key as text, for responses and for re-encoding when forwarding. */
  readonly keyText: string;
  /** The key's UTF-8 bytes. */
  readonly key: Buffer;
  readonly slot: number;
  /** The value of a set; undefined for get and delete. */
  readonly value: Buffer | undefined;
  /** Whether the value came from the request body (then it is forwarded as a body, not a parameter). */
  readonly valueInBody: boolean;
  /** Query parameters besides key and value (e.g. ack), kept for forwarding. */
  readonly extra: ReadonlyMap<string, string>;
  readonly forwarded: ForwardMarker | undefined;
  /** A migration fallback read from the key's new owner (see previousOwnerReadHeader). */
  readonly previousOwnerRead: boolean;
}

const dataRoutes: Record<string, { op: DataOp; methods: readonly string[] }> = {
  '/get': { op: 'get', methods: ['GET'] },
  '/set': { op: 'set', methods: ['GET', 'POST'] },
  '/delete': { op: 'delete', methods: ['GET', 'POST'] },
};

/** Splits a request URL into its path and raw query. */
export function splitUrl(url: string): { path: string; query: string } {
  const q = url.indexOf('?');
  return q === -1 ? { path: url, query: '' } : { path: url.slice(0, q), query: url.slice(q + 1) };
}

export function isDataPath(path: string): boolean {
  return Object.hasOwn(dataRoutes, path);
}

function decodeComponent(raw: string, name: string): string {
  try {
    return decodeURIComponent(raw.includes('+') ? raw.replaceAll('+', ' ') : raw);
  } catch {
    throw new BadRequestError(`parameter ${name}: bad percent-encoding or invalid UTF-8`);
  }
}

/** Decodes a query string. Repeated parameters are rejected: a store should not guess which one was meant. */
export function parseQuery(query: string): Map<string, string> {
  const params = new Map<string, string>();
  if (query === '') return params;
  for (const part of query.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const name = decodeComponent(eq === -1 ? part : part.slice(0, eq), 'name');
    const value = eq === -1 ? '' : decodeComponent(part.slice(eq + 1), name);
    if (params.has(name)) throw new BadRequestError(`parameter ${name} is given more than once`);
    params.set(name, value);
  }
  return params;
}

/** Validates a key: 1 to keyBytesMax bytes of UTF-8. */
export function keyBytes(keyText: string | undefined): Buffer {
  if (keyText === undefined) throw new BadRequestError('missing parameter: key');
  if (keyText === '') throw new BadRequestError('parameter key is empty; a key is 1 to 1024 bytes');
  const key = Buffer.from(keyText, 'utf8');
  if (key.length > keyBytesMax) {
    throw new BadRequestError(`key is ${key.length} bytes; a key is at most ${keyBytesMax} bytes`);
  }
  return key;
}

/**
 * A refused body is still read and discarded up to this many bytes, so the client receives the 413
 * instead of a reset connection; past it the connection is closed.
 */
const discardBytesMax = 64 * 1024 * 1024;

/** After refusing a body, lets the rest of it drain (bounded) so the error reaches the client. */
function discardRest(req: IncomingMessage): void {
  let discarded = 0;
  req.on('data', (chunk: Buffer) => {
    discarded += chunk.length;
    if (discarded > discardBytesMax) req.socket.destroy();
  });
  req.resume();
}

/** Reads a request body of at most `limit` bytes. */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) {
    discardRest(req);
    return Promise.reject(new PayloadTooLargeError(`body is ${declared} bytes; a value is at most ${limit} bytes`));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.off('data', onData);
        chunks.length = 0;
        discardRest(req);
        reject(new PayloadTooLargeError(`body exceeds ${limit} bytes; a value is at most ${limit} bytes`));
        return;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.once('end', () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size)));
    req.once('error', reject);
  });
}

/** The parameters of a data request: key and value apart, the rest (e.g. ack) kept for forwarding. */
interface DataParams {
  readonly keyText: string | undefined;
  readonly valueText: string | undefined;
  readonly extra: ReadonlyMap<string, string>;
}

const noExtra: ReadonlyMap<string, string> = new Map();

/**
 * The parameters of a query. A query that is `key=<text>` alone, with nothing to decode (no `%`, `+`
 * or `&`), is by far the commonest (every plain GET); it is taken apart without building a map. It
 * gives exactly what parseQuery() would.
 */
function dataParams(query: string): DataParams {
  if (query.startsWith('key=') && query.indexOf('&') === -1 && query.indexOf('%') === -1 && query.indexOf('+') === -1) {
    return { keyText: query.slice(4), valueText: undefined, extra: noExtra };
  }
  const params = parseQuery(query);
  const keyText = params.get('key');
  const valueText = params.get('value');
  params.delete('key');
  params.delete('value');
  return { keyText, valueText, extra: params };
}

/**
 * Parses a data-route request. Synchronous unless the value comes in the body, which it then reads:
 * GETs, the bulk of the traffic, cost no promise.
 */
export function parseDataRequest(req: IncomingMessage, path: string, query: string): DataRequest | Promise<DataRequest> {
  const route = dataRoutes[path]!;
  const method = req.method ?? 'GET';
  if (!route.methods.includes(method)) throw new MethodNotAllowedError(method, path, route.methods);
  const { keyText, valueText, extra } = dataParams(query);
  const key = keyBytes(keyText);
  if (route.op === 'set' && method === 'POST') {
    return readBody(req, valueBytesMax).then((body) => {
      if (valueText !== undefined && body.length > 0) {
        throw new BadRequestError('give the value either as the value parameter or as the body, not both');
      }
      const valueInBody = valueText === undefined;
      return build(req, route.op, method, extra, keyText!, key, valueInBody ? body : Buffer.from(valueText!, 'utf8'), valueInBody);
    });
  }
  if (route.op === 'set' && valueText === undefined) throw new BadRequestError('missing parameter: value (or POST the value as the body)');
  const value = route.op === 'set' ? Buffer.from(valueText!, 'utf8') : undefined;
  return build(req, route.op, method as 'GET' | 'POST', extra, keyText!, key, value, false);
}

/**
 * The forwarding marks among a request's headers. Read from rawHeaders: `req.headers` would build an
 * object of every header on each request only to look up two names that client requests never carry.
 * A repeated header counts once (its first occurrence).
 */
function forwardMarks(req: IncomingMessage): { by: string | undefined; topologyId: string | undefined; previousOwnerRead: boolean } {
  let by: string | undefined;
  let topologyId: string | undefined;
  let previousOwnerRead = false;
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    // Every mark starts with "x-kv-"; skip the rest without lower-casing them.
    if (name.length < 6 || (name.charCodeAt(0) | 0x20) !== 0x78) continue;
    const lower = name.toLowerCase();
    if (lower === forwardedByHeader) by ??= raw[i + 1];
    else if (lower === forwardedTopologyHeader) topologyId ??= raw[i + 1];
    else if (lower === previousOwnerReadHeader) previousOwnerRead ||= raw[i + 1] === '1';
  }
  return { by, topologyId, previousOwnerRead };
}

function build(
  req: IncomingMessage,
  op: DataOp,
  method: 'GET' | 'POST',
  extra: ReadonlyMap<string, string>,
  keyText: string,
  key: Buffer,
  value: Buffer | undefined,
  valueInBody: boolean,
): DataRequest {
  if (value !== undefined && value.length > valueBytesMax) {
    throw new PayloadTooLargeError(`value is ${value.length} bytes; a value is at most ${valueBytesMax} bytes`);
  }
  const marks = forwardMarks(req);
  const forwarded = marks.by !== undefined ? { by: marks.by, topologyId: marks.topologyId ?? 'unknown' } : undefined;
  const previousOwnerRead = forwarded !== undefined && marks.previousOwnerRead;
  return { op, method, keyText, key, slot: keySlot(key), value, valueInBody, extra, forwarded, previousOwnerRead };
}

/** The path and query of a data request, re-encoded so that `&`, `=`, spaces and unicode survive. */
export function encodeDataPath(req: DataRequest): string {
  let url = `/${req.op}?key=${encodeURIComponent(req.keyText)}`;
  if (req.value !== undefined && !req.valueInBody) url += `&value=${encodeURIComponent(req.value.toString('utf8'))}`;
  for (const [name, value] of req.extra) url += `&${encodeURIComponent(name)}=${encodeURIComponent(value)}`;
  return url;
}

/**
 * What a data route answers: status, headers as a flat [name, value, name, value, ...] list (lower-case
 * names; node:http writes it without building an object) and body.
 */
export interface DataReply {
  readonly status: number;
  readonly headers: readonly string[];
  readonly body: Buffer | string;
}
