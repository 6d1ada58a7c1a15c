// The client's HTTP exchanges: undici connection pools (one per node, kept alive) driven through
// dispatch() with a handler of its own, so that an answer costs no stream, no AbortSignal and no promise
// beyond the one it resolves (a client sends many small requests; those objects were most of its CPU).

import { Agent, type Dispatcher } from 'undici';
import { valueBytesMax } from '../core/limits.js';
import type { Answer } from './answer.js';
import { KvClientError } from './errors.js';

export interface Exchange {
  /** host:port */
  readonly node: string;
  readonly method: 'GET' | 'POST';
  readonly path: string;
  readonly headers: Record<string, string>;
  readonly body: Buffer | undefined;
  /** Bounds the whole exchange, from the request waiting for a connection to the answer's last byte. */
  readonly timeoutMs: number;
  readonly signal: AbortSignal | undefined;
  /** The largest answer body taken (default: the largest value, plus room for an error's JSON). */
  readonly replyBytesMax?: number;
}

/** The exchange's own deadline passed: what undici's own timeouts would say, so callers handle one code. */
export class ExchangeTimeoutError extends Error {
  readonly code = 'UND_ERR_HEADERS_TIMEOUT';
  constructor(node: string, ms: number) {
    super(`${node} did not answer within ${ms} ms`);
  }
}

/** A reply body larger than the largest value (plus room for an error's JSON) is not kvshard's. */
const replyBytesMax = valueBytesMax + 64 * 1024;
/** A connection that is not up within this long counts as refused: the call may try elsewhere. */
const connectTimeoutMs = 2000;
/** Idle connections close after this long (the nodes close theirs after 5 s). */
const keepAliveMs = 4000;

function tooLarge(node: string, bytesMax: number): KvClientError {
  return new KvClientError({ code: 'bad_answer', message: `${node} sent a reply of over ${bytesMax} bytes`, node });
}

export class Transport {
  private readonly agent: Agent;

  constructor(connectionsPerNode: number) {
    this.agent = new Agent({ connections: connectionsPerNode, keepAliveTimeout: keepAliveMs, connect: { timeout: connectTimeoutMs } });
  }

  /**
   * Sends one request and collects its answer; rejects on a network failure, at the exchange's deadline
   * (also while the request still waits for a connection: undici's own timeouts start only once it is
   * sent, and bodyTimeout only bounds the gap between two parts of a body) or on the caller's abort.
   */
  exchange(x: Exchange): Promise<Answer> {
    const bytesMax = x.replyBytesMax ?? replyBytesMax;
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      let status = 0;
      let settled = false;
      let control: Dispatcher.DispatchController | undefined;
      const finish = (err: unknown, answer?: Answer) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        x.signal?.removeEventListener('abort', onAbort);
        if (err === undefined) resolve(answer!);
        else reject(err);
      };
      const stop = (err: unknown) => {
        control?.abort(err as Error);
        finish(err);
      };
      const onAbort = () => stop(x.signal!.reason);
      const timer = setTimeout(() => stop(new ExchangeTimeoutError(x.node, x.timeoutMs)), x.timeoutMs);
      if (x.signal?.aborted) return stop(x.signal.reason);
      x.signal?.addEventListener('abort', onAbort, { once: true });
      const handler: Dispatcher.DispatchHandler = {
        onRequestStart(controller) {
          control = controller;
          // Given up while it waited for a connection: it must not be sent now.
          if (settled) controller.abort(new ExchangeTimeoutError(x.node, x.timeoutMs));
        },
        onResponseStart(_controller, statusCode, headers) {
          status = statusCode;
          if (Number(headers['content-length'] ?? 0) > bytesMax) stop(tooLarge(x.node, bytesMax));
        },
        onResponseData(_controller, chunk) {
          size += chunk.length;
          if (size > bytesMax) return stop(tooLarge(x.node, bytesMax));
          chunks.push(chunk);
        },
        onResponseEnd() {
          finish(undefined, { status, body: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size), node: x.node });
        },
        onResponseError(_controller, err) {
          finish(err);
        },
      };
      this.agent.dispatch(
        {
          origin: `http://${x.node}`,
          method: x.method,
          path: x.path,
          headers: x.headers,
          body: x.method === 'POST' ? (x.body ?? '') : null,
          headersTimeout: x.timeoutMs,
          bodyTimeout: x.timeoutMs,
        },
        handler,
      );
    });
  }

  close(): Promise<void> {
    return this.agent.close();
  }
}
