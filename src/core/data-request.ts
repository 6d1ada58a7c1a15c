// Parsing and validating the data routes' requests (/get, /set, /delete) from a raw node:http request.
// Query strings are decoded strictly: a malformed percent-escape or invalid UTF-8 is a 400, never a guess.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { BadRequestError, ClientFaultError, MethodNotAllowedError, OverloadedError, PayloadTooLargeError, RequestTimeoutError } from './errors.js';
import { bodyStallMs, discardBytesMax, keyBytesMax, parameterNameCharsMax, valueBytesMax } from './limits.js';
import { internalMarks, type ClientMap, type ForwardMarker, type InternalMarks } from './internal-marks.js';
import { keySlot } from './slots.js';

export type DataOp = 'get' | 'set' | 'delete';

export interface DataRequest {
  readonly op: DataOp;
  /** HEAD only on /get: answered like GET, and node:http leaves the body out. */
  readonly method: 'GET' | 'POST' | 'HEAD';
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
  /** Set by a client that routes by slot: answer 421 moved instead of forwarding (see clientMapHeader). */
  readonly clientMap: ClientMap | undefined;
}

interface DataRoute {
  readonly op: DataOp;
  readonly path: string;
  readonly methods: readonly string[];
  /** Every parameter the route accepts: anything else is refused, so a later option is never silently ignored. */
  readonly params: ReadonlySet<string>;
}

const dataRoutes: Record<string, DataRoute> = {
  '/get': { op: 'get', path: '/get', methods: ['GET', 'HEAD'], params: new Set(['key']) },
  '/set': { op: 'set', path: '/set', methods: ['GET', 'POST'], params: new Set(['key', 'value', 'ack']) },
  '/delete': { op: 'delete', path: '/delete', methods: ['GET', 'POST'], params: new Set(['key', 'ack']) },
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
    throw new BadRequestError(`parameter ${shownName(name)}: bad percent-encoding or invalid UTF-8`);
  }
}

/**
 * A parameter name as an error message shows it: as it is when it is a plain word, else cut and
 * JSON-escaped, since it is the client's text going back to it.
 */
export function shownName(name: string): string {
  return /^[A-Za-z0-9_-]{1,64}$/.test(name) ? name : JSON.stringify(name.slice(0, parameterNameCharsMax));
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
    if (params.has(name)) throw new BadRequestError(`parameter ${shownName(name)} is given more than once`);
    params.set(name, value);
  }
  return params;
}

/**
 * Refuses a parameter the route does not document. The name is cut and JSON-escaped, since it is the
 * client's text going back into a JSON message.
 */
export function refuseUnknownParams(params: ReadonlyMap<string, string>, allowed: ReadonlySet<string>, path: string): void {
  for (const name of params.keys()) {
    if (allowed.has(name)) continue;
    const shown = name.slice(0, parameterNameCharsMax);
    throw new BadRequestError(`unknown parameter ${JSON.stringify(shown)} for ${path}; allowed: ${[...allowed].join(', ')}`, { parameter: shown });
  }
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

/** After refusing a body, lets the rest of it drain (bounded) so the error reaches the client. */
function discardRest(req: IncomingMessage): void {
  let discarded = 0;
  req.on('data', (chunk: Buffer) => {
    discarded += chunk.length;
    if (discarded > discardBytesMax) req.socket.destroy();
  });
  req.resume();
}

/**
 * Refuses a body for load: nothing more of it is read, and the connection closes once the answer is out,
 * since the rest of the body would otherwise be taken for the next request.
 */
function refuseForLoad(req: IncomingMessage, message: string): OverloadedError {
  req.pause();
  return new OverloadedError(message, true);
}

/**
 * The bytes of client request bodies held by this process at once, bounded so that many concurrent
 * large uploads cannot take the process's memory (each may be up to valueBytesMax). Bytes are counted
 * as they arrive, whatever the body's declared length (a client that only announces a large body holds
 * nothing), and released when the request's response is done or its connection closes.
 */
export class BodyBudget {
  private held = 0;
  private highest = 0;
  private refusals = 0;

  constructor(readonly bytesMax: number) {}

  /** Takes `bytes` more for one request, or false (counted as a refusal) when that would pass the bound. */
  take(bytes: number): boolean {
    if (this.held + bytes > this.bytesMax) {
      this.refusals++;
      return false;
    }
    this.held += bytes;
    if (this.held > this.highest) this.highest = this.held;
    return true;
  }

  release(bytes: number): void {
    this.held -= bytes;
  }

  status(): Record<string, number> {
    return { body_bytes_in_flight: this.held, body_bytes_in_flight_peak: this.highest, body_bytes_max: this.bytesMax, refused_overloaded: this.refusals };
  }
}

/**
 * Reads a request body of at most `limit` bytes, within `budget`: its bytes stay counted until the
 * response is done or the connection closes, whichever comes first. A body cut off by the client, or
 * malformed, rejects with ClientFaultError.
 */
export function readBody(req: IncomingMessage, res: ServerResponse, limit: number, budget: BodyBudget): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) {
    discardRest(req);
    return Promise.reject(new PayloadTooLargeError(`body is ${declared} bytes; a value is at most ${limit} bytes`));
  }
  if (req.destroyed) return Promise.reject(new ClientFaultError(cutOff));
  let taken = 0;
  const socket = req.socket;
  const release = () => {
    res.off('close', release);
    socket.off('close', release);
    budget.release(taken);
    taken = 0;
  };
  res.once('close', release);
  socket.once('close', release);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const stalled = setTimeout(() => {
      req.pause();
      fail(new RequestTimeoutError(`no byte of the request body arrived for ${bodyStallMs / 1000} s`));
    }, bodyStallMs);
    const fail = (err: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(stalled);
      req.off('data', onData);
      chunks.length = 0;
      reject(err);
    };
    const onData = (chunk: Buffer) => {
      if (size + chunk.length > limit) {
        fail(new PayloadTooLargeError(`body exceeds ${limit} bytes; a value is at most ${limit} bytes`));
        discardRest(req);
        return;
      }
      if (!budget.take(chunk.length)) return fail(refuseForLoad(req, `this node already holds ${budget.bytesMax} bytes of request bodies; retry shortly`));
      taken += chunk.length;
      stalled.refresh();
      chunks.push(chunk);
      size += chunk.length;
    };
    req.on('data', onData);
    req.once('end', () => {
      if (settled) return;
      settled = true;
      clearTimeout(stalled);
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    });
    // The error is built only for a body still being read: node emits close on every request once its
    // response is done, and an Error's stack trace is a measurable part of a small SET's cost.
    req.once('error', (err) => settled || fail(new ClientFaultError(describeBodyError(err))));
    // A connection that closes before the body ended: node emits close (and aborted) on the request.
    req.once('close', () => settled || fail(new ClientFaultError(cutOff)));
  });
}

const cutOff = 'the client closed the connection before the body was complete';

function describeBodyError(err: Error): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ECONNRESET' || err.message === 'aborted') return cutOff;
  return `malformed request body (${code ?? 'unreadable'})`;
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
function dataParams(query: string, route: DataRoute): DataParams {
  if (query.startsWith('key=') && query.indexOf('&') === -1 && query.indexOf('%') === -1 && query.indexOf('+') === -1) {
    return { keyText: query.slice(4), valueText: undefined, extra: noExtra };
  }
  const params = parseQuery(query);
  refuseUnknownParams(params, route.params, route.path);
  const keyText = params.get('key');
  const valueText = params.get('value');
  params.delete('key');
  params.delete('value');
  return { keyText, valueText, extra: params };
}

/** What parsing a data request needs from the server around it. */
export interface ParseContext {
  /** Whether a header value is the cluster secret (compared in constant time). */
  readonly isClusterToken: (value: string) => boolean;
  readonly budget: BodyBudget;
}

/**
 * Parses a data-route request. Synchronous unless the value comes in the body, which it then reads:
 * GETs, the bulk of the traffic, cost no promise.
 */
export function parseDataRequest(
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
  query: string,
  context: ParseContext,
): DataRequest | Promise<DataRequest> {
  const route = dataRoutes[path]!;
  const method = req.method ?? 'GET';
  if (!route.methods.includes(method)) throw new MethodNotAllowedError(method, path, route.methods);
  const { keyText, valueText, extra } = dataParams(query, route);
  const key = keyBytes(keyText);
  const marks = internalMarks(req, context.isClusterToken);
  if (route.op === 'set' && method === 'POST' && !(valueText !== undefined && hasNoBody(req))) {
    return readBody(req, res, valueBytesMax, context.budget).then((body) => {
      if (valueText !== undefined && body.length > 0) {
        throw new BadRequestError('give the value either as the value parameter or as the body, not both');
      }
      const valueInBody = valueText === undefined;
      return build(route.op, method, extra, keyText!, key, valueInBody ? body : Buffer.from(valueText!, 'utf8'), valueInBody, marks);
    });
  }
  if (route.op === 'set' && valueText === undefined) throw new BadRequestError('missing parameter: value (or POST the value as the body)');
  const value = route.op === 'set' ? Buffer.from(valueText!, 'utf8') : undefined;
  return build(route.op, method as DataRequest['method'], extra, keyText!, key, value, false, marks);
}

/**
 * Whether a request says it carries no body (Content-Length 0, or neither a length nor a Transfer-Encoding,
 * as node's parser decides too): a POST with its value in the query then costs no body read. KvClient
 * sends small text values that way.
 */
function hasNoBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return length === '0' || (length === undefined && req.headers['transfer-encoding'] === undefined);
}

function build(
  op: DataOp,
  method: DataRequest['method'],
  extra: ReadonlyMap<string, string>,
  keyText: string,
  key: Buffer,
  value: Buffer | undefined,
  valueInBody: boolean,
  marks: InternalMarks,
): DataRequest {
  if (value !== undefined && value.length > valueBytesMax) {
    throw new PayloadTooLargeError(`value is ${value.length} bytes; a value is at most ${valueBytesMax} bytes`);
  }
  return {
    op,
    method,
    keyText,
    key,
    slot: keySlot(key),
    value,
    valueInBody,
    extra,
    forwarded: marks.forwarded,
    previousOwnerRead: marks.previousOwnerRead,
    clientMap: marks.clientMap,
  };
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
