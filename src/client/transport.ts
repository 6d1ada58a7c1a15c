// The client's HTTP exchanges: undici connection pools (one per node, kept alive) driven through
// dispatch() with a handler of its own, so that an answer costs no stream, no AbortSignal and no promise
// beyond the one it resolves (a client sends many small requests; those objects were most of its CPU).

import { Agent, type Dispatcher } from 'undici';
import { valueBytesMax } from '../core/limits.js';
import { KvClientError } from './errors.js';

/** A node's answer: status and body, whatever the status. */
export interface Answer {
  readonly status: number;
  readonly body: Buffer;
  readonly node: string;
}

export interface Exchange {
  /** host:port */
  readonly node: string;
  readonly method: 'GET' | 'POST';
  readonly path: string;
  readonly headers: Record<string, string>;
  readonly body: Buffer | undefined;
  /** Bounds the wait for the answer's head and for each part of its body. */
  readonly timeoutMs: number;
  readonly signal: AbortSignal | undefined;
}

/** A reply body larger than the largest value (plus room for an error's JSON) is not kvshard's. */
const replyBytesMax = valueBytesMax + 64 * 1024;
/** A connection that is not up within this long counts as refused: the call may try elsewhere. */
const connectTimeoutMs = 2000;
/** Idle connections close after this long (the nodes close theirs after 5 s). */
const keepAliveMs = 4000;

function tooLarge(node: string): KvClientError {
  return new KvClientError({ code: 'bad_answer', message: `${node} sent a reply of over ${replyBytesMax} bytes`, node });
}

export class Transport {
  private readonly agent: Agent;

  constructor(connectionsPerNode: number) {
    this.agent = new Agent({ connections: connectionsPerNode, keepAliveTimeout: keepAliveMs, connect: { timeout: connectTimeoutMs } });
  }

  /** Sends one request and collects its answer; rejects on a network failure, a timeout or the caller's abort. */
  exchange(x: Exchange): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      let status = 0;
      let onAbort: (() => void) | undefined;
      const done = () => {
        if (onAbort) x.signal!.removeEventListener('abort', onAbort);
      };
      const handler: Dispatcher.DispatchHandler = {
        onRequestStart(controller) {
          if (x.signal === undefined || onAbort) return;
          if (x.signal.aborted) return controller.abort(x.signal.reason);
          onAbort = () => controller.abort(x.signal!.reason);
          x.signal.addEventListener('abort', onAbort, { once: true });
        },
        onResponseStart(controller, statusCode, headers) {
          status = statusCode;
          if (Number(headers['content-length'] ?? 0) > replyBytesMax) controller.abort(tooLarge(x.node));
        },
        onResponseData(controller, chunk) {
          size += chunk.length;
          if (size > replyBytesMax) return controller.abort(tooLarge(x.node));
          chunks.push(chunk);
        },
        onResponseEnd() {
          done();
          resolve({ status, body: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size), node: x.node });
        },
        onResponseError(_controller, err) {
          done();
          reject(err);
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
