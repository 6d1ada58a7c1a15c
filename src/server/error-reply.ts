// Errors as clients see them: every error, from a handler or from node's HTTP parser, becomes one JSON
// shape, {"error": code, "message": ...}; a client's fault is one rate-limited log line, a bug a stack.

import { AssertionError } from 'node:assert';
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { splitUrl } from '../core/data-request.js';
import { ClientFaultError, KvError, MethodNotAllowedError, PayloadTooLargeError } from '../core/errors.js';
import { clientFaultLogLinesPerS, closeLingerMs, requestHeadBytesMax } from '../core/limits.js';
import { LogLimiter } from '../core/log-limiter.js';

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
    if (known instanceof ClientFaultError) clientFaults.log(log, `client fault on ${describeRequest(res)}: ${known.message}`);
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
  if (known?.retryAfterS !== undefined) headers['retry-after'] = String(known.retryAfterS);
  if (known?.closeConnection) {
    headers['connection'] = 'close';
    closeGracefully(res);
  }
  const text = JSON.stringify(body);
  headers['content-length'] = String(Buffer.byteLength(text));
  res.writeHead(status, headers);
  res.end(text);
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
    socket.end();
    const bound = setTimeout(() => socket.destroy(), closeLingerMs);
    socket.once('end', () => socket.destroy());
    socket.once('close', () => clearTimeout(bound));
    // A body nobody reads any more (refused while arriving) flows on and is dropped.
    req?.removeAllListeners('data');
    req?.resume();
  };
}

/**
 * Requests node's HTTP parser refuses never reach a handler: answer them here, in the same JSON shape.
 * Like node's own handler, write only when no answer to an earlier request on the socket has started.
 */
export function answerClientError(err: NodeJS.ErrnoException, socket: Duplex, log: (message: string) => void): void {
  // An answer may be written only when no earlier request on this connection awaits its own: the client
  // would take ours for that one's. Then the connection just closes (a client's fault all the same).
  const pending = (socket as Duplex & { _httpMessage?: ServerResponse })._httpMessage;
  if (err.code !== 'ECONNRESET' && socket.writable && pending === undefined) {
    const [status, code, message] = clientErrorAnswer(err);
    writeRawAnswer(socket, status, code, message);
    clientFaults.log(log, `client fault: ${message}`);
  } else if (err.code !== 'ECONNRESET') {
    clientFaults.log(log, `client fault: ${clientErrorAnswer(err)[2]}; connection closed`);
  }
  socket.destroy();
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
