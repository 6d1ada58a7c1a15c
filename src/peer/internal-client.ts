// Node-to-node requests off the hot paths (migration batches, the layout exchange): a JSON or msgpack
// body posted with the cluster token through one PeerPool per peer, every status returned to the
// caller, the reply bounded and parsed as JSON, and every request aborted when the owning task stops.

import { tokenHeader } from '../core/wire.js';
import { PeerPool } from './peer-pool.js';

export interface InternalClientOptions {
  readonly token: string;
  readonly timeoutMs: number;
  /** The largest reply accepted. */
  readonly replyBytesMax: number;
  /** Sockets kept to each peer. */
  readonly socketsMax: number;
  /** Aborts every request in flight: the task that owns the client stops. */
  readonly signal: AbortSignal;
}

export interface InternalReply<T> {
  readonly status: number;
  /** The reply parsed as JSON; undefined when it is not JSON. */
  readonly data: T | undefined;
}

export class InternalClient {
  private readonly pools = new Map<string, PeerPool>();

  constructor(private readonly options: InternalClientOptions) {}

  /** POSTs `body` to `path` at `address`: a Buffer as msgpack, anything else as JSON. */
  async post<T>(address: string, path: string, body: Buffer | object): Promise<InternalReply<T>> {
    const msgpack = Buffer.isBuffer(body);
    const reply = await this.pool(address).exchange({
      method: 'POST',
      path,
      headers: { [tokenHeader]: this.options.token, 'content-type': msgpack ? 'application/msgpack' : 'application/json' },
      body: msgpack ? body : Buffer.from(JSON.stringify(body)),
      signal: this.options.signal,
    });
    return { status: reply.status, data: parseJson<T>(reply.body, reply.headers['content-type']) };
  }

  /** GETs `path` at `address`, a JSON answer parsed (undefined when it is not JSON). */
  async get<T>(address: string, path: string): Promise<InternalReply<T>> {
    const reply = await this.pool(address).exchange({ method: 'GET', path, headers: { [tokenHeader]: this.options.token }, signal: this.options.signal });
    return { status: reply.status, data: parseJson<T>(reply.body, reply.headers['content-type']) };
  }

  /** Closes every socket; requests in flight fail at once. */
  close(): void {
    for (const pool of this.pools.values()) void pool.destroy().catch(() => undefined);
    this.pools.clear();
  }

  private pool(address: string): PeerPool {
    let pool = this.pools.get(address);
    if (!pool) {
      const { timeoutMs, replyBytesMax, socketsMax } = this.options;
      pool = new PeerPool(address, { connections: socketsMax, timeoutMs, replyBytesMax });
      this.pools.set(address, pool);
    }
    return pool;
  }
}

function parseJson<T>(body: Buffer, contentType: string | string[] | undefined): T | undefined {
  if (!String(contentType ?? '').includes('json')) return undefined;
  try {
    return JSON.parse(body.toString('utf8')) as T;
  } catch {
    return undefined;
  }
}
