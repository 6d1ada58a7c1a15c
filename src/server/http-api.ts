// The HTTP surface. The data routes (/get, /set, /delete) are served by a plain node:http handler,
// because express's router costs several times more CPU per request than the data path itself; every
// other path goes to an express Router. Errors from either become one JSON shape in sendError().
//
// The other paths use express's Router, not an express() app, and their handlers use only node's own
// request and response methods (sendJson() instead of res.json()). An express app swaps the prototype
// of every request and response it handles; once node's http code has seen those objects, the data
// path slows for the life of the process. Measured on this machine: a trickle of 2.5 GET /health per
// second (or a replica's replication heartbeats) raised a data GET from 37 to 44 us of CPU.

import { AssertionError } from 'node:assert';
import { timingSafeEqual } from 'node:crypto';
import http, { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import {
  BodyBudget,
  isDataPath,
  parseDataRequest,
  parseQuery,
  refuseUnknownParams,
  splitUrl,
  type DataReply,
  type DataRequest,
  type ParseContext,
} from '../core/data-request.js';
import { sendJson } from '../core/http-reply.js';
import {
  BadRequestError,
  ClientFaultError,
  KvError,
  MethodNotAllowedError,
  OverloadedError,
  PayloadTooLargeError,
  UnauthorizedError,
  UnknownRouteError,
} from '../core/errors.js';
import {
  bodyBytesInFlightMax,
  connectionsMax,
  headersTimeoutMs,
  keepAliveIdleMs,
  pipelinedRequestsMax,
  requestHeadBytesMax,
  requestTimeoutMs,
  slotCount,
} from '../core/limits.js';
import { tokenHeader } from '../core/wire.js';
import { digestPath } from '../replication/replication-protocol.js';
import type { Store } from '../storage/store.js';

export interface NodeInfo {
  readonly shard: string;
  readonly role: string;
  readonly address: string;
}

/**
 * What the server needs of the node's role (node/roles.ts implements it): the answer to a parsed data
 * request. Local reads answer synchronously; writes and forwarded requests return a promise.
 */
export interface DataHandler {
  handle(req: DataRequest): DataReply | Promise<DataReply>;
}

export interface HttpApiOptions {
  readonly role: DataHandler;
  readonly info: NodeInfo;
  /** Extra JSON for GET /status, computed on each call. */
  readonly status: () => Record<string, unknown>;
  /** Bound on client body bytes held at once (default bodyBytesInFlightMax). */
  readonly bodyBytesMax?: number;
  readonly log: (message: string) => void;
  /** The cluster secret every /internal/ request must carry. */
  readonly token: string;
  readonly store: Store;
  /** The role's internal endpoints (a replica's replication receiver), if any. */
  readonly internalRoutes: Router | undefined;
}

/**
 * What a body parser's or a socket's error means for the client: errors of express's body parsers carry
 * a `type`, an aborted request the code ECONNRESET. Undefined for anything else (a bug).
 */
function clientFaultOf(err: unknown): KvError | undefined {
  const e = (err ?? {}) as { type?: string; status?: number; code?: string; message?: string };
  switch (e.type) {
    case 'entity.too.large':
      return new PayloadTooLargeError('internal request body over its limit');
    case 'entity.parse.failed':
      return new ClientFaultError('malformed JSON body');
    case 'request.aborted':
    case 'request.size.invalid':
      return new ClientFaultError('the request body was cut off before its declared length');
  }
  if (e.code === 'ECONNRESET' || e.message === 'aborted') return new ClientFaultError('the client closed the connection before the body was complete');
  if (typeof e.status === 'number' && e.status >= 400 && e.status < 500 && e.type !== undefined)
    return new ClientFaultError(`unreadable request body (${e.type})`);
  return undefined;
}

/** A request as a log names it: method and path only, since a query may carry a value. */
function describeRequest(res: ServerResponse): string {
  const req = res.req as IncomingMessage | undefined;
  return `${req?.method ?? '?'} ${splitUrl(req?.url ?? '?').path.slice(0, 64)}`;
}

/**
 * Writes an error as {"error": code, "message": ...}, with the answering node's X-Kv-* headers so a
 * client can tell which node refused. Unknown errors are logged with their stack and become a plain 500;
 * a client's fault is logged as one line.
 */
export function sendError(res: ServerResponse, err: unknown, nodeHeaders: Record<string, string>, log: (message: string) => void): void {
  let status = 500;
  let body: Record<string, unknown> = { error: 'internal', message: 'internal error' };
  const known = err instanceof KvError ? err : clientFaultOf(err);
  if (known) {
    status = known.status;
    body = known.toJSON();
    if (known instanceof ClientFaultError) log(`client fault on ${describeRequest(res)}: ${known.message}`);
  } else if (err instanceof AssertionError) {
    // A broken invariant: crash rather than risk writing bad data.
    log(`assertion failed, exiting: ${err.stack}`);
    process.nextTick(() => {
      throw err;
    });
  } else {
    log(`internal error on ${describeRequest(res)}: ${(err as Error)?.stack ?? String(err)}`);
  }
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const headers: Record<string, string> = { ...nodeHeaders, 'content-type': 'application/json' };
  if (err instanceof MethodNotAllowedError) headers['allow'] = err.allowed.join(', ');
  if (err instanceof OverloadedError) {
    headers['retry-after'] = String(err.retryAfterS);
    if (err.closeConnection) headers['connection'] = 'close';
  }
  const text = JSON.stringify(body);
  headers['content-length'] = String(Buffer.byteLength(text));
  res.writeHead(status, headers);
  res.end(text);
}

/**
 * Requests node's HTTP parser refuses never reach a handler: answer them here, in the same JSON shape.
 * Like node's own handler, write only when no answer to an earlier request on the socket has started.
 */
function answerClientError(err: NodeJS.ErrnoException, socket: Duplex, log: (message: string) => void): void {
  // An answer may be written only when no earlier request on this connection awaits its own: the client
  // would take ours for that one's. Then the connection just closes (a client's fault all the same).
  const pending = (socket as Duplex & { _httpMessage?: ServerResponse })._httpMessage;
  if (err.code !== 'ECONNRESET' && socket.writable && pending === undefined) {
    const [status, code, message] = clientErrorAnswer(err);
    const body = JSON.stringify({ error: code, message });
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
    log(`client fault: ${message}`);
  } else if (err.code !== 'ECONNRESET') {
    log(`client fault: ${clientErrorAnswer(err)[2]}; connection closed`);
  }
  socket.destroy();
}

function clientErrorAnswer(err: NodeJS.ErrnoException): [number, string, string] {
  switch (err.code) {
    case 'HPE_HEADER_OVERFLOW':
      return [431, 'headers_too_large', `the request line and headers exceed ${requestHeadBytesMax} bytes; send a large value as a POST body`];
    case 'HPE_INVALID_METHOD':
      return [501, 'not_implemented', 'unknown HTTP method'];
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return [408, 'request_timeout', 'the request did not arrive in time'];
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return [413, 'payload_too_large', 'chunk extensions too large'];
    default:
      return [400, 'bad_request', `malformed HTTP request (${err.code ?? 'unparsable'})`];
  }
}

function sendReply(res: ServerResponse, reply: DataReply): void {
  const body = reply.body;
  const headers = reply.headers.slice();
  headers.push('content-length', String(typeof body === 'string' ? Buffer.byteLength(body) : body.length));
  res.writeHead(reply.status, headers);
  res.end(body);
}

function nodeHeaders(info: NodeInfo): Record<string, string> {
  return { 'x-kv-shard': info.shard, 'x-kv-role': info.role };
}

/**
 * Serves the data routes. Written without async/await so that a local read (parse, LMDB get, reply)
 * runs synchronously. Returns a promise, settled once the answer is written, when the request went
 * asynchronous (a write, a forward, a body to read), and undefined when it was answered at once.
 */
function dataHandler(options: HttpApiOptions, context: ParseContext) {
  const { role, log } = options;
  const headers = nodeHeaders(options.info);
  return (req: IncomingMessage, res: ServerResponse, path: string, query: string): Promise<void> | undefined => {
    try {
      const parsed = parseDataRequest(req, res, path, query, context);
      const reply = parsed instanceof Promise ? parsed.then((r) => role.handle(r)) : role.handle(parsed);
      if (!(reply instanceof Promise)) {
        sendReply(res, reply);
        return undefined;
      }
      return reply.then(
        (r) => sendReply(res, r),
        (err: unknown) => sendError(res, err, headers, log),
      );
    } catch (err) {
      sendError(res, err, headers, log);
      return undefined;
    }
  };
}

/** A connection's data requests waiting behind the one in progress. */
interface Waiting {
  readonly queue: (() => Promise<void> | undefined)[];
  /** Set once a request was refused for a full queue: the connection closes after its answer. */
  full: boolean;
}
const waitingRequests = Symbol('kvshard.waitingRequests');
/** undefined while no data request of the connection is in progress. */
type OrderedSocket = Duplex & { [waitingRequests]: Waiting | undefined };

/**
 * Runs a connection's data requests one after another once one of them went asynchronous, so that
 * requests pipelined on one connection take effect in the order they were sent (a client reads its
 * own writes). A connection with nothing in progress, the usual case, pays one property read. Requests
 * still waiting when the connection closes are dropped: nobody is left to read their answers.
 */
function runInOrder(socket: OrderedSocket, first: Promise<void>, log: (message: string) => void): void {
  const waiting: Waiting = { queue: [], full: false };
  socket[waitingRequests] = waiting;
  void (async () => {
    try {
      await first;
      for (let next = waiting.queue.shift(); next !== undefined && !socket.destroyed; next = waiting.queue.shift()) await next();
    } catch (err) {
      // The handlers answer their own errors; anything reaching here is a bug. The connection goes, since
      // its remaining requests can no longer be answered in order.
      log(`internal error while serving a connection's requests in order: ${(err as Error)?.stack ?? String(err)}`);
      socket.destroy();
    } finally {
      waiting.queue.length = 0;
      socket[waitingRequests] = undefined;
    }
  })();
}

/** Every path but the data routes. Handlers take node's request and response, not express's decorated ones. */
function otherRoutes(options: HttpApiOptions, headers: Record<string, string>, isClusterToken: (value: string) => boolean): Router {
  const router = express.Router();
  // node:http answers an HTTP/1.1 request without Host with a bare 400 unless told not to; the check
  // happens here (and in data-request.ts for the data routes) so the answer is JSON like every other.
  router.use((req: IncomingMessage, _res: ServerResponse, next: NextFunction) => {
    next(req.httpVersion === '1.1' && req.headers.host === undefined ? new BadRequestError('an HTTP/1.1 request needs a Host header') : undefined);
  });
  const only = (path: string, ...methods: string[]) =>
    router.all(path, (req: IncomingMessage, _res: ServerResponse, next: NextFunction) => {
      next(methods.includes(req.method ?? '') ? 'route' : new MethodNotAllowedError(req.method ?? '', path, methods));
    });
  // HEAD never writes, so the read routes take it; express's Router answers it with the GET handler.
  only('/health', 'GET', 'HEAD');
  router.get('/health', (_req: IncomingMessage, res: ServerResponse) => {
    sendJson(res, 200, { status: 'ok', ...options.info, pid: process.pid });
  });
  only('/status', 'GET', 'HEAD');
  router.get('/status', (_req: IncomingMessage, res: ServerResponse) => {
    sendJson(res, 200, { ...options.info, ...options.status() });
  });
  router.use('/internal', requireToken(isClusterToken));
  router.get(digestPath, (req: IncomingMessage, res: ServerResponse) => {
    const params = parseQuery(splitUrl(req.url ?? '/').query);
    refuseUnknownParams(params, digestParams, digestPath);
    const from = intParam(params, 'from', 0, slotCount - 1, 0);
    const to = intParam(params, 'to', from, slotCount - 1, slotCount - 1);
    const buckets = intParam(params, 'buckets', 1, slotCount, 1);
    sendJson(res, 200, { ...options.info, keys: options.store.count(), ranges: options.store.digest(from, to, buckets) });
  });
  if (options.internalRoutes) router.use(options.internalRoutes);
  router.use((err: unknown, _req: IncomingMessage, res: ServerResponse, _next: NextFunction) => sendError(res, err, headers, options.log));
  return router;
}

const digestParams: ReadonlySet<string> = new Set(['from', 'to', 'buckets']);

/** Compares a header value with the cluster secret in constant time. */
export function tokenChecker(token: string): (value: string) => boolean {
  const expected = Buffer.from(token, 'utf8');
  return (value) => {
    const given = Buffer.from(value, 'utf8');
    return given.length === expected.length && timingSafeEqual(given, expected);
  };
}

function requireToken(isClusterToken: (value: string) => boolean) {
  return (req: IncomingMessage, _res: ServerResponse, next: NextFunction) => {
    next(isClusterToken(String(req.headers[tokenHeader] ?? '')) ? undefined : new UnauthorizedError());
  };
}

function intParam(params: Map<string, string>, name: string, min: number, max: number, fallback: number): number {
  const raw = params.get(name);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!/^\d+$/.test(raw) || value < min || value > max) throw new BadRequestError(`parameter ${name} must be an integer from ${min} to ${max}`);
  return value;
}

/** A server with the API's limits that answers every request 503 `starting` until serveHttpApi(). */
export function createServer(log: (message: string) => void): http.Server {
  const server = http.createServer({
    keepAliveTimeout: keepAliveIdleMs,
    headersTimeout: headersTimeoutMs,
    requestTimeout: requestTimeoutMs,
    maxHeaderSize: requestHeadBytesMax,
    // Checked by the handlers instead, so that the answer is JSON like every other (see data-request.ts).
    requireHostHeader: false,
  });
  server.maxConnections = connectionsMax;
  server.on('request', answerStarting);
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => answerClientError(err, socket, log));
  return server;
}

/** The answer to requests that reach a node between binding its address and opening its data. */
function answerStarting(_req: IncomingMessage, res: ServerResponse): void {
  const body = JSON.stringify({ error: 'starting', message: 'this node is starting; retry shortly', retriable: true });
  res.writeHead(503, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'retry-after': '1' });
  res.end(body);
}

/** A server that serves the API at once (for tests of the HTTP surface). */
export function createHttpServer(options: HttpApiOptions): http.Server {
  const server = createServer(options.log);
  serveHttpApi(server, options);
  return server;
}

/** Starts serving the API on `server` (from createServer()), replacing its `starting` answer. */
export function serveHttpApi(server: http.Server, options: HttpApiOptions): void {
  const isClusterToken = tokenChecker(options.token);
  const budget = new BodyBudget(options.bodyBytesMax ?? bodyBytesInFlightMax);
  const handleData = dataHandler(options, { isClusterToken, budget });
  const headers = nodeHeaders(options.info);
  const routes = otherRoutes({ ...options, status: () => ({ ...options.status(), requests: budget.status() }) }, headers, isClusterToken);
  // What no route answered: an unknown path, or an error thrown past the error handler.
  const unrouted = (res: ServerResponse, path: string) => (err?: unknown) =>
    sendError(res, err !== undefined && err !== 'route' && err !== 'router' ? err : new UnknownRouteError(path.slice(0, 64)), headers, options.log);
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const { path, query } = splitUrl(req.url ?? '/');
    if (!isDataPath(path)) {
      // Router's types name express's decorated request and response; the handlers above use only node's.
      routes(req as Request, res as Response, unrouted(res, path));
      return;
    }
    const socket = req.socket as unknown as OrderedSocket;
    const waiting = socket[waitingRequests];
    if (waiting !== undefined) {
      // Past a refused request nothing more runs: the connection closes after its answer, so no later
      // request can take effect before the refused one.
      if (waiting.full) return;
      if (waiting.queue.length < pipelinedRequestsMax) {
        waiting.queue.push(() => handleData(req, res, path, query));
        return;
      }
      waiting.full = true;
      const refusal = new OverloadedError(`more than ${pipelinedRequestsMax} requests pipelined on one connection; wait for answers`);
      refusal.closeConnection = true;
      waiting.queue.push(() => void sendError(res, refusal, headers, options.log));
      return;
    }
    const pending = handleData(req, res, path, query);
    if (pending !== undefined) runInOrder(socket, pending, options.log);
  };
  // Every socket gets the property at once, so all of them keep one shape for V8.
  server.on('connection', (socket: OrderedSocket) => {
    socket[waitingRequests] = undefined;
  });
  server.off('request', answerStarting);
  server.on('request', onRequest);
}
