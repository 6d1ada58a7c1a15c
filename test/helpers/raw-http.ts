// Raw HTTP/1.1 over one TCP socket, for what fetch cannot do: pipelined requests on one connection,
// malformed request lines and headers, bodies cut off half way. Every exchange has a timeout.

import net from 'node:net';

export interface RawResponse {
  readonly status: number;
  /** Header names lower-cased; a repeated header keeps its last value. */
  readonly headers: Record<string, string>;
  readonly body: Buffer;
  json(): any;
  text(): string;
}

/** The address `host:port` as connect options. */
export function target(address: string): { host: string; port: number } {
  const colon = address.lastIndexOf(':');
  return { host: address.slice(0, colon), port: Number(address.slice(colon + 1)) };
}

/**
 * The body of a chunked response that starts at `start`, and where it ends; undefined while incomplete.
 * Trailers are not expected and not parsed.
 */
function dechunk(data: Buffer, start: number): { body: Buffer; end: number } | undefined {
  const parts: Buffer[] = [];
  let offset = start;
  for (;;) {
    const lineEnd = data.indexOf('\r\n', offset);
    if (lineEnd === -1) return undefined;
    const size = parseInt(data.toString('latin1', offset, lineEnd), 16);
    if (!Number.isInteger(size)) throw new Error(`bad chunk size line: ${data.toString('latin1', offset, lineEnd)}`);
    if (data.length < lineEnd + 2 + size + 2) return undefined;
    if (size === 0) return { body: Buffer.concat(parts), end: lineEnd + 4 };
    parts.push(data.subarray(lineEnd + 2, lineEnd + 2 + size));
    offset = lineEnd + 2 + size + 2;
  }
}

/**
 * Parses every complete response at the start of `data`. Responses marked in `bodiless` (answers to
 * HEAD) carry no body although their Content-Length describes one.
 */
export function parseResponses(data: Buffer, bodiless: readonly boolean[] = []): { responses: RawResponse[]; rest: Buffer } {
  const responses: RawResponse[] = [];
  let offset = 0;
  for (;;) {
    const end = data.indexOf('\r\n\r\n', offset);
    if (end === -1) break;
    const head = data.toString('latin1', offset, end).split('\r\n');
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head[0] ?? '')?.[1]);
    const headers: Record<string, string> = {};
    for (const line of head.slice(1)) {
      const colon = line.indexOf(':');
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    let body: Buffer;
    if (bodiless[responses.length]) {
      body = Buffer.alloc(0);
      offset = end + 4;
    } else if (headers['transfer-encoding'] === 'chunked') {
      const chunked = dechunk(data, end + 4);
      if (!chunked) break;
      body = chunked.body;
      offset = chunked.end;
    } else {
      const length = Number(headers['content-length'] ?? 0);
      if (data.length < end + 4 + length) break;
      body = data.subarray(end + 4, end + 4 + length);
      offset = end + 4 + length;
    }
    responses.push({ status, headers, body, json: () => JSON.parse(body.toString('utf8')), text: () => body.toString('utf8') });
  }
  return { responses, rest: data.subarray(offset) };
}

export interface RawExchangeOptions {
  /** How many responses to wait for (default: until the server closes the connection). */
  readonly responses?: number;
  /** Indexes of responses that carry no body although they may name a Content-Length (HEAD). */
  readonly bodiless?: readonly boolean[];
  readonly timeoutMs?: number;
  /** Close our side right after writing (e.g. a body cut off half way). */
  readonly destroyAfterWrite?: boolean;
}

/**
 * Writes `payload` to a new connection in one go and collects the responses. Resolves once the
 * expected number of responses has arrived or the server closed the connection; rejects on timeout.
 */
export function rawExchange(
  address: string,
  payload: Buffer | string,
  options: RawExchangeOptions = {},
): Promise<{ responses: RawResponse[]; closed: boolean }> {
  const timeoutMs = options.timeoutMs ?? 15_000;
  return new Promise((resolve, reject) => {
    const socket = net.connect(target(address));
    let data = Buffer.alloc(0);
    let settled = false;
    const finish = (closed: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      try {
        resolve({ responses: parseResponses(data, options.bodiless).responses, closed });
      } catch (err) {
        reject(err);
      }
    };
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      socket.destroy();
      reject(new Error(`no complete answer within ${timeoutMs} ms; got: ${data.toString('latin1', 0, 500)}`));
    }, timeoutMs);
    socket.on('connect', () => {
      socket.write(payload);
      if (options.destroyAfterWrite) {
        socket.end();
        setImmediate(() => socket.destroy());
        finish(true);
      }
    });
    socket.on('data', (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      try {
        if (options.responses !== undefined && parseResponses(data, options.bodiless).responses.length >= options.responses) finish(false);
      } catch (err) {
        settled = true;
        clearTimeout(timer);
        socket.destroy();
        reject(err);
      }
    });
    socket.on('close', () => finish(true));
    socket.on('error', (err) => {
      if (!settled && data.length === 0) {
        settled = true;
        clearTimeout(timer);
        reject(err);
      }
    });
  });
}

/** One request line plus headers, as a client would write it. */
export function rawRequest(method: string, path: string, headers: Record<string, string> = {}, body = ''): string {
  const lines = [`${method} ${path} HTTP/1.1`, 'Host: kvshard'];
  for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value}`);
  if (body !== '' && !Object.keys(headers).some((h) => h.toLowerCase() === 'content-length' || h.toLowerCase() === 'transfer-encoding')) {
    lines.push(`Content-Length: ${Buffer.byteLength(body)}`);
  }
  return `${lines.join('\r\n')}\r\n\r\n${body}`;
}

/**
 * Writes each of `payloads` on one connection, the next only once the answers to the earlier ones have
 * arrived (a kept-alive connection reused), and resolves with every answer once the connection has
 * closed. Rejects when an answer or the close does not come within `timeoutMs`.
 */
export function rawConversation(address: string, payloads: readonly string[], timeoutMs = 15_000): Promise<RawResponse[]> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(target(address));
    let data = Buffer.alloc(0);
    let sent = 0;
    let settled = false;
    const settle = (err: Error | undefined) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(parseResponses(data).responses);
    };
    const timer = setTimeout(
      () =>
        settle(new Error(`after ${sent} of ${payloads.length} requests, no answer or close within ${timeoutMs} ms; got: ${data.toString('latin1', 0, 500)}`)),
      timeoutMs,
    );
    const sendNext = () => {
      if (sent < payloads.length && parseResponses(data).responses.length >= sent) socket.write(payloads[sent++]!);
    };
    socket.on('connect', sendNext);
    socket.on('data', (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      sendNext();
    });
    // A reset after the answers arrived still ends the conversation: what arrived is the result.
    socket.on('error', () => undefined);
    socket.on('close', () => settle(undefined));
  });
}
