// Forwarding data requests to the node that owns the key, over HTTP with keep-alive connections.
// Every call has a timeout and a size bound; the owner's status, X-Kv-* headers and body are relayed
// unchanged.

import { errors } from 'undici';
import { encodeDataPath, forwardedByHeader, forwardedTopologyHeader, previousOwnerReadHeader, type DataReply, type DataRequest } from './data-request.js';
import { ShardTimeoutError, ShardUnavailableError } from './errors.js';
import { forwardTimeoutMs, peerSocketsMax, valueBytesMax } from './limits.js';
import { PeerPool } from './peer-pool.js';

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
  private readonly pools = new Map<string, PeerPool>();
  private readonly timeoutMs: number;
  private readonly headers: Record<string, string>;
  private readonly previousOwnerHeaders: Record<string, string>;

  constructor(options: ForwarderOptions) {
    this.timeoutMs = options.timeoutMs ?? forwardTimeoutMs;
    this.headers = { [forwardedByHeader]: options.self, [forwardedTopologyHeader]: options.topologyId };
    this.previousOwnerHeaders = { ...this.headers, [previousOwnerReadHeader]: '1' };
  }

  private pool(address: string): PeerPool {
    let pool = this.pools.get(address);
    if (!pool) {
      pool = new PeerPool(address, { connections: peerSocketsMax, timeoutMs: this.timeoutMs, replyBytesMax });
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

  private async send(peer: Peer, method: 'GET' | 'POST', path: string, headers: Record<string, string>, body: Buffer | undefined): Promise<DataReply> {
    try {
      const reply = await this.pool(peer.address).exchange({ method, path, headers, body });
      return { status: reply.status, headers: relayedHeaders(reply.headers), body: reply.body };
    } catch (err) {
      throw this.translate(err, peer);
    }
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
