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
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import { isDataPath, parseDataRequest, parseQuery, splitUrl, type DataReply } from './data-request.js';
import { BadRequestError, KvError, MethodNotAllowedError, UnauthorizedError, UnknownRouteError } from './errors.js';
import { headersTimeoutMs, keepAliveIdleMs, requestTimeoutMs, slotCount } from './limits.js';
import { digestPath, tokenHeader } from './replication-protocol.js';
import type { Role } from './roles.js';
import type { Store } from './store.js';

export interface NodeInfo {
  readonly shard: string;
  readonly role: string;
  readonly address: string;
}

export interface HttpApiOptions {
  readonly role: Role;
  readonly info: NodeInfo;
  /** Extra JSON for GET /status, computed on each call. */
  readonly status: () => Record<string, unknown>;
  readonly log: (message: string) => void;
  /** The cluster secret every /internal/ request must carry. */
  readonly token: string;
  readonly store: Store;
  /** The role's internal endpoints (a replica's replication receiver), if any. */
  readonly internalRoutes: Router | undefined;
}

/**
 * Writes an error as {"error": code, "message": ...}, with the answering node's X-Kv-* headers so a
 * client can tell which node refused. Unknown errors are logged with their stack and become a plain 500.
 */
export function sendError(res: ServerResponse, err: unknown, nodeHeaders: Record<string, string>, log: (message: string) => void): void {
  let status = 500;
  let body: Record<string, unknown> = { error: 'internal', message: 'internal error' };
  if (err instanceof KvError) {
    status = err.status;
    body = err.toJSON();
  } else if (err instanceof AssertionError) {
    // A broken invariant: crash rather than risk writing bad data.
    log(`assertion failed, exiting: ${err.stack}`);
    process.nextTick(() => {
      throw err;
    });
  } else if ((err as { type?: string })?.type === 'entity.too.large') {
    status = 413;
    body = { error: 'payload_too_large', message: 'internal request body over its limit' };
  } else {
    log(`internal error: ${(err as Error)?.stack ?? String(err)}`);
  }
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const headers: Record<string, string> = { ...nodeHeaders, 'content-type': 'application/json' };
  if (err instanceof MethodNotAllowedError) headers['allow'] = err.allowed.join(', ');
  res.writeHead(status, headers);
  res.end(JSON.stringify(body));
}

/** Node's request after one of express's body parsers (express.raw, express.json) has set `body`. */
export type BodyRequest = IncomingMessage & { body?: unknown };

/** A JSON answer, written with node's own methods (see the top of this file for why not res.json()). */
export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
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

function dataHandler(options: HttpApiOptions) {
  const { role, log } = options;
  const headers = nodeHeaders(options.info);
  const fail = (res: ServerResponse) => (err: unknown) => sendError(res, err, headers, log);
  // Written without async/await so that a local read (parse, LMDB get, reply) runs synchronously.
  return (req: IncomingMessage, res: ServerResponse, path: string, query: string): void => {
    try {
      const parsed = parseDataRequest(req, path, query);
      const reply = parsed instanceof Promise ? parsed.then((r) => role.handle(r)) : role.handle(parsed);
      if (reply instanceof Promise) reply.then((r) => sendReply(res, r), fail(res));
      else sendReply(res, reply);
    } catch (err) {
      sendError(res, err, headers, log);
    }
  };
}

/** Every path but the data routes. Handlers take node's request and response, not express's decorated ones. */
function otherRoutes(options: HttpApiOptions, headers: Record<string, string>): Router {
  const router = express.Router();
  const only = (path: string, ...methods: string[]) =>
    router.all(path, (req: IncomingMessage, _res: ServerResponse, next: NextFunction) => {
      next(methods.includes(req.method ?? '') ? 'route' : new MethodNotAllowedError(req.method ?? '', path, methods));
    });
  only('/health', 'GET');
  router.get('/health', (_req: IncomingMessage, res: ServerResponse) => {
    sendJson(res, 200, { status: 'ok', ...options.info, pid: process.pid });
  });
  only('/status', 'GET');
  router.get('/status', (_req: IncomingMessage, res: ServerResponse) => {
    sendJson(res, 200, { ...options.info, ...options.status() });
  });
  router.use('/internal', requireToken(options.token));
  router.get(digestPath, (req: IncomingMessage, res: ServerResponse) => {
    const params = parseQuery(splitUrl(req.url ?? '/').query);
    const from = intParam(params, 'from', 0, slotCount - 1, 0);
    const to = intParam(params, 'to', from, slotCount - 1, slotCount - 1);
    const buckets = intParam(params, 'buckets', 1, slotCount, 1);
    sendJson(res, 200, { ...options.info, keys: options.store.count(), ranges: options.store.digest(from, to, buckets) });
  });
  if (options.internalRoutes) router.use(options.internalRoutes);
  router.use((err: unknown, _req: IncomingMessage, res: ServerResponse, _next: NextFunction) => sendError(res, err, headers, options.log));
  return router;
}

function requireToken(token: string) {
  const expected = Buffer.from(token, 'utf8');
  return (req: IncomingMessage, _res: ServerResponse, next: NextFunction) => {
    const given = Buffer.from(String(req.headers[tokenHeader] ?? ''), 'utf8');
    const ok = given.length === expected.length && timingSafeEqual(given, expected);
    next(ok ? undefined : new UnauthorizedError());
  };
}

function intParam(params: Map<string, string>, name: string, min: number, max: number, fallback: number): number {
  const raw = params.get(name);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!/^\d+$/.test(raw) || value < min || value > max) throw new BadRequestError(`parameter ${name} must be an integer from ${min} to ${max}`);
  return value;
}

export function createHttpServer(options: HttpApiOptions): http.Server {
  const handleData = dataHandler(options);
  const headers = nodeHeaders(options.info);
  const routes = otherRoutes(options, headers);
  // What no route answered: an unknown path, or an error thrown past the error handler.
  const unrouted = (res: ServerResponse, path: string) => (err?: unknown) =>
    sendError(res, err !== undefined && err !== 'route' && err !== 'router' ? err : new UnknownRouteError(path), headers, options.log);
  const server = http.createServer(
    { keepAliveTimeout: keepAliveIdleMs, headersTimeout: headersTimeoutMs, requestTimeout: requestTimeoutMs },
    (req, res) => {
      const { path, query } = splitUrl(req.url ?? '/');
      if (isDataPath(path)) handleData(req, res, path, query);
      // Router's types name express's decorated request and response; the handlers above use only node's.
      else routes(req as Request, res as Response, unrouted(res, path));
    },
  );
  return server;
}
