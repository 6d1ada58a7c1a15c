// Errors as clients see them: every error, from a handler or from node's HTTP parser, becomes one JSON
// shape, {"error": code, "message": ...}; a client's fault is one rate-limited log line, a bug a stack.

import { AssertionError } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { splitUrl } from '../core/data-request.js';
import { ClientFaultError, KvError, MethodNotAllowedError, PayloadTooLargeError } from '../core/errors.js';
import { clientFaultLogLinesPerS, closeLingerMs, requestHeadBytesMax } from '../core/limits.js';
import { LogLimiter } from '../core/log-limiter.js';
import { routeOfPath } from './request-stats.js';
import type { Log } from '../core/log.js';

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

/** Client faults are logged, within a bound: a client could otherwise fill the log with its own errors. */
const clientFaults = new LogLimiter(clientFaultLogLinesPerS, 'client-fault');
const refusals = new LogLimiter(clientFaultLogLinesPerS, 'refusal');
/** Error codes that are answers, not faults: logged at debug only. */
const routineCodes: ReadonlySet<string> = new Set(['not_found', 'not_primary', 'wrong_shard']);

/** A request as a log names it: its route (a fixed set) and method, never the query, which may carry a value. */
function describeRequest(res: ServerResponse): { route: string; method: string } {
  const req = res.req as IncomingMessage | undefined;
  return { route: routeOfPath(splitUrl(req?.url ?? '?').path), method: String(req?.method ?? '?').slice(0, 16) };
}

/** What sendError() answered. */
export interface ErrorAnswer {
  readonly status: number;
  /** The answer's `error` code. */
  readonly code: string;
}

/** A request id the client sent is echoed when it looks like one: short, and safe in a header and a log line. */
const clientRequestId = /^[A-Za-z0-9._:-]{1,64}$/;
/** Request ids this process makes: a random prefix per process, then a counter. */
const requestIdPrefix = randomBytes(4).toString('hex');
let requestIds = 0;

/** The id of a request that got an error answer: the client's X-Request-Id if it sent a usable one. */
function requestIdOf(res: ServerResponse): string {
  const given = (res.req as IncomingMessage | undefined)?.headers['x-request-id'];
  if (typeof given === 'string' && clientRequestId.test(given)) return given;
  return `${requestIdPrefix}-${(++requestIds).toString(36)}`;
}

/**
 * Writes an error as {"error": code, "message": ...}, with the answering node's X-Kv-* headers so a
 * client can tell which node refused, and an X-Request-Id that the node's log line about it names.
 * Unknown errors are logged with their stack and become a plain 500; a client's fault is logged as one line.
 */
export function sendError(res: ServerResponse, err: unknown, nodeHeaders: Record<string, string>, log: Log): ErrorAnswer {
  let status = 500;
  let body: Record<string, unknown> = { error: 'internal', message: 'internal error' };
  const requestId = requestIdOf(res);
  const known = err instanceof KvError ? err : clientFaultOf(err);
  if (known) {
    status = known.status;
    body = known.toJSON();
    const fields = { ...describeRequest(res), status, code: body['error'], request_id: requestId };
    // A missing key and a redirect to the owner are routine answers. A client's mistakes and the node's
    // refusals (overloaded, a shard unavailable or late) are worth a look, but come as often as requests
    // do: each kind is bounded per second.
    if (routineCodes.has(known.code)) log.debug(known.message, fields);
    else if (status >= 500) refusals.warn(log, `refused: ${known.message}`, fields);
    else clientFaults.warn(log, `client fault: ${known.message}`, fields);
  } else if (err instanceof AssertionError) {
    // A broken invariant: crash rather than risk writing bad data.
    log.error(`assertion failed, exiting: ${err.stack}`, { ...describeRequest(res), request_id: requestId });
    process.nextTick(() => {
      throw err;
    });
  } else {
    log.error(`internal error: ${(err as Error)?.stack ?? String(err)}`, { ...describeRequest(res), status, request_id: requestId });
  }
  const code = String(body['error']);
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return { status, code };
  }
  const headers: Record<string, string> = { ...nodeHeaders, 'content-type': 'application/json', 'x-request-id': requestId };
  if (err instanceof MethodNotAllowedError) headers['allow'] = err.allowed.join(', ');
  if (known?.retryAfterS !== undefined) headers['retry-after'] = String(known.retryAfterS);
  if (known?.closeConnection) {
    headers['connection'] = 'close';
    closeGracefully(res);
  }
  const text = JSON.stringify(body);
  headers['content-length'] = String(Buffer.byteLength(text));
  res.writeHead(status, headers);
  res.end(text);
  return { status, code };
}

/**
 * Makes the socket of an answer that closes the connection close gracefully once the answer is out.
 * node would end and destroy it at once (destroySoon); with bytes from the client still unread, the
 * kernel then sends a reset, and a reset can discard the answer before the client reads it. Instead the
 * answer and a FIN go out, the rest of the request body is read and dropped, and the socket closes when
 * the client closes its side or after closeLingerMs (what nginx calls a lingering close).
 */
function closeGracefully(res: ServerResponse): void {
  const socket = res.socket;
  const req = res.req as IncomingMessage | undefined;
  if (socket === null || socket.destroyed) return;
  socket.destroySoon = () => {
    endLingering(socket);
    // A body nobody reads any more (refused while arriving) flows on and is dropped.
    req?.removeAllListeners('data');
    req?.resume();
  };
}

/** Sockets answered by answerClientError and closing: a later parser error on them is not answered again. */
const refusedSockets = new WeakSet<Duplex>();

/** What node's HTTP server keeps on a socket it serves: the answer being sent, and the request being parsed. */
type ServedSocket = Duplex & {
  _httpMessage?: ServerResponse | null;
  parser?: { incoming?: IncomingMessage | null } | null;
};

/**
 * Requests node's HTTP parser refuses never reach a handler: answer them here, in the same JSON shape.
 * An answer is written only when the client can take it for the answer to the refused request: no
 * answer is being sent on the connection, and no earlier request is still being read (a handler may
 * have answered a request before its body arrived, and a bad chunk of that body is not a new request).
 * So a refusal on a kept-alive connection whose earlier answers are all out is answered as on a fresh
 * one. Otherwise the connection just closes (a client's fault all the same).
 */
export function answerClientError(err: NodeJS.ErrnoException, socket: Duplex, log: Log): void {
  if (refusedSockets.has(socket)) return; // answered already; the lingering close ends it
  if (err.code === 'ECONNRESET') {
    socket.destroy();
    return;
  }
  // node sets _httpMessage to null once an answer is done, and leaves it undefined before the first.
  const served = socket as ServedSocket;
  const answering = served._httpMessage !== null && served._httpMessage !== undefined;
  const reading = served.parser?.incoming?.complete === false;
  if (socket.writable && !answering && !reading) {
    const [status, code, message] = clientErrorAnswer(err);
    writeRawAnswer(socket, status, code, message);
    clientFaults.warn(log, `client fault: ${message}`, { status });
    lingeringClose(socket);
  } else {
    clientFaults.warn(log, `client fault: ${clientErrorAnswer(err)[2]}; connection closed`);
    socket.destroy();
  }
}

/**
 * Closes a socket node's HTTP server has given up on once the answer written to it is out: a FIN, then
 * whatever the client still sends is read and dropped until it closes its side or closeLingerMs passes.
 * Destroying it at once would make the kernel answer the unread rest of the request (a long request line)
 * with a reset, which can discard the answer before the client reads it. A reset from the client ends it.
 */
export function lingeringClose(socket: Duplex): void {
  refusedSockets.add(socket);
  socket.on('error', () => socket.destroy());
  // Node's own 'data' listener would feed the bytes to the failed parser (and raise another parser
  // error); every further byte is dropped instead.
  socket.removeAllListeners('data');
  socket.on('data', () => undefined);
  socket.resume();
  endLingering(socket);
}

/** Sends a FIN and destroys the socket when the client closes its side, or after closeLingerMs. */
function endLingering(socket: Duplex): void {
  socket.end();
  const bound = setTimeout(() => socket.destroy(), closeLingerMs);
  socket.once('end', () => socket.destroy());
  socket.once('close', () => clearTimeout(bound));
}

/**
 * Writes an error answer, {"error": code, "message": ...}, straight to a socket that node's HTTP server
 * no longer handles (a request its parser refused, a CONNECT); the connection closes after it.
 */
export function writeRawAnswer(socket: Duplex, status: number, code: string, message: string): void {
  const body = JSON.stringify({ error: code, message });
  socket.write(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}

function clientErrorAnswer(err: NodeJS.ErrnoException): [number, string, string] {
  switch (err.code) {
    case 'HPE_HEADER_OVERFLOW':
      return [431, 'headers_too_large', `the request line and headers exceed ${requestHeadBytesMax} bytes; send a large value as a POST body`];
    case 'HPE_INVALID_VERSION':
      return [505, 'http_version_not_supported', 'only HTTP/1.0 and HTTP/1.1 are served'];
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
