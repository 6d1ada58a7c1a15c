// Forwarding data requests to the node that owns the key, over HTTP with keep-alive connections.
// Every call has a timeout and a size bound; the owner's status, X-Kv-* headers and body are relayed
// unchanged.
//
// This is the one hot path that does not use axios: measured on this machine, an axios request cost
// about 360 µs of CPU on the forwarding node against a few tens for undici's connection pool, which
// decided whether a forwarded GET reaches 0.40 of a local one. Replication and admin calls use axios.

import { errors, Pool, type Dispatcher } from 'undici';
import { encodeDataPath, forwardedByHeader, forwardedTopologyHeader, previousOwnerReadHeader, type DataReply, type DataRequest } from './data-request.js';
import { ShardTimeoutError, ShardUnavailableError } from './errors.js';
import { forwardTimeoutMs, keepAliveIdleMs, peerSocketsMax, valueBytesMax } from './limits.js';

/** Room for headers and a JSON envelope around the largest value. */
const replyBytesMax = valueBytesMax + 64 * 1024;

export interface Peer {
  readonly shard: string;
  readonly address: string;
}

export interface ForwarderOptions {
  /** `<shard>/<role>` of this node, sent as the forwarded marker. */
  readonly self: string;
  readonly topologyId: string;
  readonly timeoutMs?: number;
}

export class Forwarder {
  private readonly pools = new Map<string, Pool>();
  private readonly timeoutMs: number;
  private readonly headers: Record<string, string>;
  private readonly previousOwnerHeaders: Record<string, string>;

  constructor(options: ForwarderOptions) {
    this.timeoutMs = options.timeoutMs ?? forwardTimeoutMs;
    this.headers = { [forwardedByHeader]: options.self, [forwardedTopologyHeader]: options.topologyId };
    this.previousOwnerHeaders = { ...this.headers, [previousOwnerReadHeader]: '1' };
  }

  private pool(address: string): Pool {
    let pool = this.pools.get(address);
    if (!pool) {
      pool = new Pool(`http://${address}`, {
        connections: peerSocketsMax,
        pipelining: 1,
        keepAliveTimeout: keepAliveIdleMs,
        keepAliveMaxTimeout: keepAliveIdleMs,
        connectTimeout: this.timeoutMs,
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
        maxResponseSize: replyBytesMax,
      });
      this.pools.set(address, pool);
    }
    return pool;
  }

  /** Sends `req` to `peer` and returns its reply. Throws ShardUnavailableError or ShardTimeoutError. */
  async forward(peer: Peer, req: DataRequest): Promise<DataReply> {
    const body = req.valueInBody ? req.value : undefined;
    const headers = body === undefined ? this.headers : { ...this.headers, 'content-type': 'application/octet-stream' };
    return this.send(peer, req.method, encodeDataPath(req), headers, body);
  }

  /** Reads `req`'s key from its previous owner during a migration, whatever that node's config says. */
  readFromPreviousOwner(peer: Peer, req: DataRequest): Promise<DataReply> {
    return this.send(peer, 'GET', `/get?key=${encodeURIComponent(req.keyText)}`, this.previousOwnerHeaders, undefined);
  }

  /**
   * One request through the peer's pool. Uses undici's dispatch() with a handler that collects the
   * reply, not request(): request() wraps every response body in a Readable stream, which cost the
   * forwarding node about a fifth of its CPU per forwarded GET.
   */
  private send(peer: Peer, method: string, path: string, headers: Record<string, string>, body: Buffer | undefined): Promise<DataReply> {
    return new Promise<DataReply>((resolve, reject) => {
      let status = 0;
      let relayed: string[] = [];
      const chunks: Buffer[] = [];
      let size = 0;
      const handler: Dispatcher.DispatchHandler = {
        onRequestStart: () => undefined,
        // Called again after a 1xx answer; the last call is the final status.
        onResponseStart: (_controller, statusCode, responseHeaders) => {
          status = statusCode;
          relayed = relayedHeaders(responseHeaders);
        },
        onResponseData: (_controller, chunk) => {
          chunks.push(chunk);
          size += chunk.length;
        },
        // The pool bounds the body (maxResponseSize); concat copies it out of the socket's buffers.
        onResponseEnd: () => resolve({ status, headers: relayed, body: Buffer.concat(chunks, size) }),
        onResponseError: (_controller, err) => reject(this.translate(err, peer)),
      };
      try {
        // A forwarded write must not be retried or replayed by the client library: idempotent: false.
        this.pool(peer.address).dispatch({ origin: `http://${peer.address}`, method: method as 'GET' | 'POST', path, headers, body, idempotent: false }, handler);
      } catch (err) {
        reject(this.translate(err, peer));
      }
    });
  }

  private translate(err: unknown, peer: Peer): Error {
    if (err instanceof errors.HeadersTimeoutError || err instanceof errors.BodyTimeoutError || err instanceof errors.ConnectTimeoutError) {
      return new ShardTimeoutError(peer.shard, peer.address, this.timeoutMs);
    }
    const code = (err as { code?: string }).code ?? (err as Error).message;
    return new ShardUnavailableError(peer.shard, peer.address, code);
  }

  async close(): Promise<void> {
    await Promise.all([...this.pools.values()].map((pool) => pool.destroy()));
    this.pools.clear();
  }
}

function relayedHeaders(source: Record<string, string | string[] | undefined>): string[] {
  const headers: string[] = [];
  for (const [name, value] of Object.entries(source)) {
    if ((name.startsWith('x-kv-') || name === 'content-type') && value !== undefined) {
      headers.push(name, Array.isArray(value) ? value.join(', ') : value);
    }
  }
  return headers;
}
