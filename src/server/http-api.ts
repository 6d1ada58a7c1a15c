// The HTTP surface. The data routes (/get, /set, /delete) are served by a plain node:http handler,
// because express's router costs several times more CPU per request than the data path itself; every
// other path goes to an express Router. Errors from either become one JSON shape in sendError().
//
// The other paths use express's Router, not an express() app, and their handlers use only node's own
// request and response methods (sendJson() instead of res.json()). An express app swaps the prototype
// of every request and response it handles; once node's http code has seen those objects, the data
// path slows for the life of the process, even when they are only a trickle of /health checks or a
// replica's heartbeats (docs/performance.md has the numbers).

import { timingSafeEqual } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
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
import { BadRequestError, HttpVersionError, MethodNotAllowedError, OverloadedError, UnauthorizedError, UnknownRouteError } from '../core/errors.js';
import {
  bodyBytesInFlightMax,
  connectionsCheckIntervalMs,
  connectionsMax,
  headersTimeoutMs,
  keepAliveIdleMs,
  pipelinedRequestsMax,
  replyBytesUnsentMax,
  requestHeadBytesMax,
  requestTimeoutMs,
  slotCount,
} from '../core/limits.js';
import { tokenHeader } from '../core/wire.js';
import { digestPath } from '../replication/replication-protocol.js';
import type { Store } from '../storage/store.js';
import { answerClientError, lingeringClose, sendError, writeRawAnswer } from './error-reply.js';
import { ReplyBudget, trackReplies, type ReplySocket } from './reply-budget.js';
import { RequestStats, routeOfPath } from './request-stats.js';
import type { Log } from '../core/log.js';

export interface NodeInfo {
  readonly shard: string;
  /** The node's role now: a failover changes it (HttpApi.setRole). */
  role: string;
  readonly address: string;
}

/** A served API whose role changes at run time (a failover promotes or demotes the node). */
export interface HttpApi {
  setRole(role: DataHandler, name: string): void;
  /** Request bodies held and answers unsent, and the requests refused for them (also in /status). */
  requestStatus(): Record<string, number>;
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
  readonly log: Log;
  /** The cluster secret every /internal/ request must carry. */
  readonly token: string;
  readonly store: Store;
  /** The role's internal endpoints (a replica's replication receiver), if any. */
  readonly internalRoutes: Router | undefined;
  /** Routes open like /health, or with a token of their own (/metrics, /dashboard), if any. */
  readonly publicRoutes?: Router;
  /** Where requests are counted for /metrics; none when metrics are off (the config's metrics.enabled). */
  readonly stats?: RequestStats;
}

function sendReply(res: ServerResponse, reply: DataReply, replies: ReplyBudget): number {
  const body = reply.body;
  const length = typeof body === 'string' ? Buffer.byteLength(body) : body.length;
  replies.admit(res, length);
  const headers = reply.headers.slice();
  headers.push('content-length', String(length));
  res.writeHead(reply.status, headers);
  res.end(body);
  return reply.status;
}

function nodeHeaders(info: NodeInfo): Record<string, string> {
  return { 'x-kv-shard': info.shard, 'x-kv-role': info.role };
}

/**
 * Serves the data routes. Written without async/await so that a local read (parse, LMDB get, reply)
 * runs synchronously. Returns a promise, settled once the answer is written, when the request went
 * asynchronous (a write, a forward, a body to read), and undefined when it was answered at once. With
 * `stats`, each answer's status and duration (monotonic clock) are counted.
 */
function dataHandler(options: HttpApiOptions, context: ParseContext, replies: ReplyBudget, current: { role: DataHandler }, fail: Fail) {
  const { stats } = options;
  return (req: IncomingMessage, res: ServerResponse, path: string, query: string): Promise<void> | undefined => {
    const role = current.role;
    // Timed only with metrics on; a local read counts without allocating anything.
    const started = stats === undefined ? 0 : performance.now();
    let status: number;
    try {
      const parsed = parseDataRequest(req, res, path, query, context);
      const reply = parsed instanceof Promise ? parsed.then((r) => role.handle(r)) : role.handle(parsed);
      if (reply instanceof Promise) {
        // One promise for the whole answer: sent, or its error sent, then counted.
        const counted = (answered: number) => stats?.observeSince(dataRouteIndex[path]!, answered, started);
        return reply.then(
          (r) => {
            let answered: number;
            try {
              answered = sendReply(res, r, replies);
            } catch (err) {
              answered = fail(res, err);
            }
            counted(answered);
          },
          (err: unknown) => counted(fail(res, err)),
        );
      }
      status = sendReply(res, reply, replies);
    } catch (err) {
      status = fail(res, err);
    }
    stats?.observeSince(dataRouteIndex[path]!, status, started);
    return undefined;
  };
}

/** Answers an error (sendError) and counts its code; returns the status sent. */
type Fail = (res: ServerResponse, err: unknown) => number;

/** RequestStats route indexes of the data paths. */
const dataRouteIndex: Record<string, number> = {
  '/get': RequestStats.route('get'),
  '/set': RequestStats.route('set'),
  '/delete': RequestStats.route('delete'),
};

/** A connection's data requests waiting behind the one in progress. */
interface Waiting {
  readonly queue: (() => Promise<void> | undefined)[];
  /** Set once a request was refused for a full queue: the connection closes after its answer. */
  full: boolean;
}
const waitingRequests = Symbol('kvshard.waitingRequests');
/** undefined while no data request of the connection is in progress. */
type OrderedSocket = ReplySocket & { [waitingRequests]: Waiting | undefined };

/**
 * Runs a connection's data requests one after another once one of them went asynchronous, so that
 * requests pipelined on one connection take effect in the order they were sent (a client reads its
 * own writes). A connection with nothing in progress, the usual case, pays one property read. Requests
 * still waiting when the connection closes are dropped: nobody is left to read their answers.
 */
function runInOrder(socket: OrderedSocket, first: Promise<void>, log: Log): void {
  const waiting: Waiting = { queue: [], full: false };
  socket[waitingRequests] = waiting;
  void (async () => {
    try {
      await first;
      for (let next = waiting.queue.shift(); next !== undefined && !socket.destroyed; next = waiting.queue.shift()) await next();
    } catch (err) {
      // The handlers answer their own errors; anything reaching here is a bug. The connection goes, since
      // its remaining requests can no longer be answered in order.
      log.error(`internal error while serving a connection's requests in order: ${(err as Error)?.stack ?? String(err)}`);
      socket.destroy();
    } finally {
      waiting.queue.length = 0;
      // After a refusal that closes the connection, requests already parsed behind it are dropped.
      if (!waiting.full) socket[waitingRequests] = undefined;
    }
  })();
}

/** Every path but the data routes. Handlers take node's request and response, not express's decorated ones. */
function otherRoutes(options: HttpApiOptions, fail: Fail, isClusterToken: (value: string) => boolean): Router {
  // Paths are exact: /GET is not /get, for the data routes (a table lookup) and for these alike.
  const router = express.Router({ caseSensitive: true });
  // node:http answers an HTTP/1.1 request without Host with a bare 400 unless told not to; the check
  // happens here (and in data-request.ts for the data routes) so the answer is JSON like every other.
  router.use((req: IncomingMessage, _res: ServerResponse, next: NextFunction) => {
    next(req.httpVersion === '1.1' && req.headers.host === undefined ? new BadRequestError('an HTTP/1.1 request needs a Host header') : undefined);
  });
  // HEAD never writes, so the read routes take it; express's Router answers it with the GET handler.
  allowMethods(router, '/health', 'GET', 'HEAD');
  router.get('/health', (_req: IncomingMessage, res: ServerResponse) => {
    sendJson(res, 200, { status: 'ok', ...options.info, pid: process.pid });
  });
  allowMethods(router, '/status', 'GET', 'HEAD');
  router.get('/status', (_req: IncomingMessage, res: ServerResponse) => {
    sendJson(res, 200, { ...options.info, ...options.status() });
  });
  if (options.publicRoutes) router.use(options.publicRoutes);
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
  router.use((err: unknown, _req: IncomingMessage, res: ServerResponse, _next: NextFunction) => void fail(res, err));
  return router;
}

/** Answers `path` with 405 method_not_allowed (naming `methods` in Allow) for any other method; the route's own handlers follow. */
export function allowMethods(router: Router, path: string, ...methods: string[]): void {
  router.all(path, (req: IncomingMessage, _res: ServerResponse, next: NextFunction) => {
    next(methods.includes(req.method ?? '') ? 'route' : new MethodNotAllowedError(req.method ?? '', path, methods));
  });
}

/** The path and query of an absolute-form request target; `/` when it has none. */
function originForm(target: string): string {
  const scheme = /^https?:\/\/[^/?#]*/i.exec(target);
  const rest = scheme ? target.slice(scheme[0].length) : target;
  return rest.startsWith('/') ? rest : `/${rest}`;
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
export function createServer(log: Log): http.Server {
  const server = http.createServer({
    keepAliveTimeout: keepAliveIdleMs,
    headersTimeout: headersTimeoutMs,
    requestTimeout: requestTimeoutMs,
    maxHeaderSize: requestHeadBytesMax,
    // Checked by the handlers instead, so that the answer is JSON like every other (see data-request.ts).
    requireHostHeader: false,
    connectionsCheckingInterval: connectionsCheckIntervalMs,
  });
  server.maxConnections = connectionsMax;
  // Every socket gets its properties at once, also those accepted while the node starts, so all of them
  // keep one shape for V8.
  server.on('connection', (socket: OrderedSocket) => {
    socket[waitingRequests] = undefined;
    trackReplies(socket);
  });
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

/**
 * CONNECT asks for a tunnel, which node hands to a 'connect' listener or else drops without a word.
 * node has taken its own error listener and timeout off the socket by then: the lingering close puts an
 * error listener back (a reset would otherwise crash the process) and bounds how long the socket stays.
 */
function refuseConnect(_req: IncomingMessage, socket: Duplex): void {
  writeRawAnswer(socket, 405, 'method_not_allowed', 'CONNECT is not served: kvshard is not a proxy');
  lingeringClose(socket);
}

/** Starts serving the API on `server` (from createServer()), replacing its `starting` answer. */
export function serveHttpApi(server: http.Server, options: HttpApiOptions): HttpApi {
  const isClusterToken = tokenChecker(options.token);
  const budget = new BodyBudget(options.bodyBytesMax ?? bodyBytesInFlightMax);
  const replies = new ReplyBudget(replyBytesUnsentMax);
  const current = { role: options.role };
  // One object for every error answer's headers, so a role change shows in all of them.
  const headers = nodeHeaders(options.info);
  const { stats } = options;
  stats?.setRole(options.info.role);
  const fail: Fail = (res, err) => {
    const answer = sendError(res, err, headers, options.log);
    stats?.countError(answer.code);
    return answer.status;
  };
  const handleData = dataHandler(options, { isClusterToken, budget }, replies, current, fail);
  const requestStatus = () => ({ ...budget.status(), ...replies.status(), ...stats?.totals() });
  const routes = otherRoutes({ ...options, status: () => ({ ...options.status(), requests: requestStatus() }) }, fail, isClusterToken);
  // What no route answered: an unknown path, or an error thrown past the error handler.
  const unrouted = (res: ServerResponse, path: string) => (err?: unknown) =>
    void fail(res, err !== undefined && err !== 'route' && err !== 'router' ? err : new UnknownRouteError(path.slice(0, 64)));
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    // A proxy's absolute-form target (http://host/get?key=a) names the same resource (RFC 9112 3.2.2).
    if (req.url?.charCodeAt(0) !== 0x2f) req.url = originForm(req.url ?? '/');
    const { path, query } = splitUrl(req.url);
    if (req.httpVersionMajor !== 1) {
      fail(res, new HttpVersionError());
      return;
    }
    if (!isDataPath(path)) {
      if (stats !== undefined) {
        const started = performance.now();
        const route = RequestStats.route(routeOfPath(path));
        res.once('finish', () => stats.observeSince(route, res.statusCode, started));
      }
      // Router's types name express's decorated request and response; the handlers above use only node's.
      routes(req as Request, res as Response, unrouted(res, path));
      return;
    }
    const socket = req.socket as unknown as OrderedSocket;
    const waiting = socket[waitingRequests];
    // Past a refusal that closes the connection nothing more runs, so no later request can take effect
    // before the refused one.
    if (waiting?.full) return;
    const refusal =
      replies.unreadRefusal(socket) ??
      (waiting !== undefined && waiting.queue.length >= pipelinedRequestsMax
        ? new OverloadedError(`more than ${pipelinedRequestsMax} requests pipelined on one connection; wait for answers`, true)
        : undefined);
    if (refusal !== undefined) {
      const refuse = () => void fail(res, refusal);
      if (waiting === undefined) {
        socket[waitingRequests] = { queue: [], full: true };
        refuse();
      } else {
        waiting.full = true;
        waiting.queue.push(refuse);
      }
      return;
    }
    if (waiting !== undefined) {
      waiting.queue.push(() => handleData(req, res, path, query));
      return;
    }
    const pending = handleData(req, res, path, query);
    if (pending !== undefined) runInOrder(socket, pending, options.log);
  };
  server.on('connect', refuseConnect);
  server.off('request', answerStarting);
  server.on('request', onRequest);
  return {
    setRole(role, name) {
      current.role = role;
      options.info.role = name;
      headers['x-kv-role'] = name;
      stats?.setRole(name);
    },
    requestStatus,
  };
}
