// Every HTTP exchange with another node (forwarding, replication, migration, the layout exchange,
// health probes) goes through this: undici's pool of bounded keep-alive sockets, timeouts on connect,
// headers and body, a bound on the reply, and the whole reply collected into one buffer. Not axios,
// which costs several times the CPU per request (docs/performance.md has the numbers); the command
// line's admin requests, off every node's path, use axios.

import { Pool, type Dispatcher } from 'undici';
import { keepAliveIdleMs } from '../core/limits.js';

export interface PeerPoolOptions {
  /** Sockets kept to the peer. */
  readonly connections: number;
  /** Bound on waiting for the reply's headers and on each pause in its body. */
  readonly timeoutMs: number;
  /** Bound on connecting (default: timeoutMs). */
  readonly connectTimeoutMs?: number;
  /** The largest reply accepted. */
  readonly replyBytesMax: number;
}

export interface PeerReply {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Buffer;
}

export interface PeerRequest {
  readonly method: 'GET' | 'POST';
  readonly path: string;
  readonly headers: Record<string, string>;
  readonly body?: Buffer | undefined;
  /** Bound on waiting for this reply, when it differs from the pool's. */
  readonly timeoutMs?: number;
  /** Aborts the request (the task that made it stops). */
  readonly signal?: AbortSignal;
}

/** undici's pool of keep-alive sockets to one peer, with the origin every request to it names. */
export class PeerPool {
  private readonly pool: Pool;
  private readonly origin: string;

  constructor(address: string, options: PeerPoolOptions) {
    this.origin = `http://${address}`;
    this.pool = new Pool(this.origin, {
      connections: options.connections,
      pipelining: 1,
      keepAliveTimeout: keepAliveIdleMs,
      keepAliveMaxTimeout: keepAliveIdleMs,
      connectTimeout: options.connectTimeoutMs ?? options.timeoutMs,
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
      maxResponseSize: options.replyBytesMax,
    });
  }

  /**
   * One request, never retried or replayed by undici (idempotent: false: a write must not be applied
   * twice behind the caller's back). Rejects with undici's error on failure or timeout.
   *
   * Uses dispatch() with a handler that collects the reply, not request(): request() wraps every body
   * in a Readable stream, which cost a forwarding node about a fifth of its CPU per forwarded GET.
   */
  exchange(request: PeerRequest): Promise<PeerReply> {
    return new Promise<PeerReply>((resolve, reject) => {
      let status = 0;
      let headers: PeerReply['headers'] = {};
      const chunks: Buffer[] = [];
      let size = 0;
      const signal = request.signal;
      if (signal?.aborted) return reject(signal.reason);
      let abort: (() => void) | undefined;
      const settle = () => {
        if (abort) signal!.removeEventListener('abort', abort);
      };
      const handler: Dispatcher.DispatchHandler = {
        onRequestStart: (controller) => {
          if (!signal) return;
          // The signal may have fired while the request waited for a socket.
          if (signal.aborted) return controller.abort(signal.reason);
          abort = () => controller.abort(signal.reason);
          signal.addEventListener('abort', abort, { once: true });
        },
        // Called again after a 1xx answer; the last call is the final status.
        onResponseStart: (_controller, statusCode, responseHeaders) => {
          status = statusCode;
          headers = responseHeaders;
        },
        onResponseData: (_controller, chunk) => {
          chunks.push(chunk);
          size += chunk.length;
        },
        // The pool bounds the body (maxResponseSize); concat copies it out of the socket's buffers.
        onResponseEnd: () => {
          settle();
          resolve({ status, headers, body: Buffer.concat(chunks, size) });
        },
        onResponseError: (_controller, err) => {
          settle();
          reject(err);
        },
      };
      try {
        // One literal shape for every request (a spread would make V8 build each one the slow way); the
        // rare request with its own timeout adds its fields after.
        const options: Dispatcher.DispatchOptions = {
          origin: this.origin,
          method: request.method,
          path: request.path,
          headers: request.headers,
          body: request.body,
          idempotent: false,
        };
        if (request.timeoutMs !== undefined) {
          options.headersTimeout = request.timeoutMs;
          options.bodyTimeout = request.timeoutMs;
        }
        this.pool.dispatch(options, handler);
      } catch (err) {
        reject(err);
      }
    });
  }

  /** Closes the sockets; a request in flight fails at once. */
  destroy(): Promise<void> {
    return this.pool.destroy();
  }
}
