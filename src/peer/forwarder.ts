// Forwarding data requests to the node that owns the key, over HTTP with keep-alive connections.
// Every call has a timeout and a size bound; the owner's status, X-Kv-* headers and body are relayed
// unchanged. A peer that just failed is skipped until it answers again (peer-health.ts).

import { errors } from 'undici';
import { encodeDataPath, type DataReply, type DataRequest } from '../core/data-request.js';
import { ShardConnectionLostError, ShardTimeoutError, ShardUnavailableError } from '../core/errors.js';
import { forwardTimeoutMs, forwardUrlCharsMax, peerConnectTimeoutMs, peerSocketsMax, replicaAckTimeoutMs, forwardReplyBytesMax } from '../core/limits.js';
import { PeerHealth, type PeerState } from './peer-health.js';
import { PeerPool } from './peer-pool.js';
import { forwardedByHeader, forwardedEpochHeader, forwardedLayoutHeader, previousOwnerReadHeader, tokenHeader } from '../core/wire.js';
import type { Log } from '../core/log.js';

/** The primary and epoch a 421 not_primary answer names; undefined for any other 421 (wrong_shard). */
function notPrimaryOf(reply: DataReply): { primary: string; epoch: number } | undefined {
  try {
    const body = JSON.parse(typeof reply.body === 'string' ? reply.body : reply.body.toString('utf8')) as Record<string, unknown>;
    if (body['error'] !== 'not_primary' || typeof body['primary'] !== 'string' || !Number.isSafeInteger(body['epoch'])) return undefined;
    return { primary: body['primary'], epoch: body['epoch'] as number };
  } catch {
    return undefined;
  }
}

export interface Peer {
  readonly shard: string;
  readonly address: string;
  /** On a write: the epoch this node knows for the shard, sent along so a deposed primary learns of a newer one. */
  readonly epoch?: number;
}

export interface ForwarderOptions {
  /** `<shard>/<role>` of this node, sent as the forwarded marker. */
  readonly self: string;
  readonly layoutId: string;
  /** The cluster secret: forwarded marks count at the receiver only with it. */
  readonly token: string;
  readonly log: Log;
  readonly timeoutMs?: number;
  /**
   * A member answered a forwarded write with 421 not_primary, naming its shard's primary and epoch: the
   * write is retried once at that primary when this returns true (`primary` is a member of the shard).
   */
  readonly onNotPrimary?: (shard: string, primary: string, epoch: number) => boolean;
}

/** How a forwarded request ended, the `outcome` label of kvshard_forwarded_requests_total. */
export const forwardOutcomes = ['answered', 'unavailable', 'timeout', 'connection_lost', 'skipped_down'] as const;
export type ForwardOutcome = (typeof forwardOutcomes)[number];

export class Forwarder {
  private readonly pools = new Map<string, PeerPool>();
  /** Forwarded requests by target shard (names from the config) and outcome, for /metrics. */
  readonly outcomes = new Map<string, Record<ForwardOutcome, number>>();
  private readonly timeoutMs: number;
  private readonly headers: Record<string, string>;
  private readonly previousOwnerHeaders: Record<string, string>;
  private readonly health: PeerHealth;

  constructor(private readonly options: ForwarderOptions) {
    this.timeoutMs = options.timeoutMs ?? forwardTimeoutMs;
    this.headers = { [forwardedByHeader]: options.self, [forwardedLayoutHeader]: options.layoutId, [tokenHeader]: options.token };
    this.previousOwnerHeaders = { ...this.headers, [previousOwnerReadHeader]: '1' };
    this.health = new PeerHealth(options.log);
  }

  private pool(address: string): PeerPool {
    let pool = this.pools.get(address);
    if (!pool) {
      pool = new PeerPool(address, {
        connections: peerSocketsMax,
        timeoutMs: this.timeoutMs,
        connectTimeoutMs: Math.min(peerConnectTimeoutMs, this.timeoutMs),
        replyBytesMax: forwardReplyBytesMax,
      });
      this.pools.set(address, pool);
    }
    return pool;
  }

  /** Sends `req` to `peer` and returns its reply. Throws ShardUnavailableError or ShardTimeoutError. */
  async forward(peer: Peer, req: DataRequest): Promise<DataReply> {
    let path = encodeDataPath(req);
    // HEAD goes on as GET, so the owner's Content-Length comes back; this node's server drops the body.
    let method: 'GET' | 'POST' = req.method === 'HEAD' ? 'GET' : req.method;
    // A read has no value and no ack to wait for, and a 421 for it is not retried: it goes out as it is.
    if (req.op === 'get') return this.send(peer, method, path, this.headers, undefined, false);
    let body = req.valueInBody ? req.value : undefined;
    if (body === undefined && req.value !== undefined && path.length > forwardUrlCharsMax) {
      path = encodeDataPath({ ...req, valueInBody: true });
      method = 'POST';
      body = req.value;
    }
    let headers = body === undefined ? this.headers : { ...this.headers, 'content-type': 'application/octet-stream' };
    if (peer.epoch !== undefined) headers = { ...headers, [forwardedEpochHeader]: String(peer.epoch) };
    // An ack=replica write may wait replicaAckTimeoutMs at the owner, which then says whether it was
    // committed; the forward waits that long and its own bound on top, so the owner's answer comes back.
    const timeoutMs = req.extra.get('ack') === 'replica' ? this.timeoutMs + replicaAckTimeoutMs : undefined;
    const reply = await this.send(peer, method, path, headers, body, true, timeoutMs);
    if (reply.status !== 421) return reply;
    const moved = notPrimaryOf(reply);
    if (moved === undefined || moved.primary === peer.address) return reply;
    // Only a member of the shard, by this node's own config, is tried.
    if (this.options.onNotPrimary?.(peer.shard, moved.primary, moved.epoch) !== true) return reply;
    const retryHeaders = { ...headers, [forwardedEpochHeader]: String(moved.epoch) };
    return this.send({ shard: peer.shard, address: moved.primary }, method, path, retryHeaders, body, true, timeoutMs);
  }

  /**
   * Reads `req` from `first`, or from `second` when `first` cannot be reached or does not answer in
   * time: a read is idempotent, and the other member of the owning shard holds the same data (a replica
   * may trail the latest write). Throws `first`'s error when both fail.
   */
  async read(first: Peer, second: Peer, req: DataRequest): Promise<DataReply> {
    let reply: DataReply;
    try {
      reply = await this.forward(first, req);
    } catch (err) {
      if (!(err instanceof ShardUnavailableError || err instanceof ShardTimeoutError)) throw err;
      return this.forward(second, req).catch(() => {
        throw err;
      });
    }
    // A 503 is a member that cannot answer now (recovering, or a replica without its primary): the other
    // member may. Its answer counts unless it fails too.
    if (reply.status !== 503) return reply;
    return this.forward(second, req).then(
      (other) => (other.status === 503 ? reply : other),
      () => reply,
    );
  }

  /** The peers this node has forwarded to, up or down, for /status. */
  peers(): Record<string, PeerState> {
    return this.health.status();
  }

  /** Reads `req`'s key from its previous owner during a migration, whatever that node's config says. */
  readFromPreviousOwner(peer: Peer, req: DataRequest): Promise<DataReply> {
    return this.send(peer, 'GET', `/get?key=${encodeURIComponent(req.keyText)}`, this.previousOwnerHeaders, undefined, false);
  }

  private async send(
    peer: Peer,
    method: 'GET' | 'POST',
    path: string,
    headers: Record<string, string>,
    body: Buffer | undefined,
    write: boolean,
    /** A bound of this request's own; the pool's (this.timeoutMs) when undefined. */
    timeoutMs?: number,
  ): Promise<DataReply> {
    const down = this.health.downReason(peer.address);
    if (down !== undefined) {
      this.count(peer.shard, 'skipped_down');
      throw new ShardUnavailableError(peer.shard, peer.address, down);
    }
    try {
      const reply = await this.pool(peer.address).exchange({ method, path, headers, body, timeoutMs });
      this.count(peer.shard, 'answered');
      this.health.noteUp(peer.address);
      return { status: reply.status, headers: relayedHeaders(reply.headers), body: reply.body };
    } catch (err) {
      const bound = timeoutMs ?? this.timeoutMs;
      const translated = this.translate(err, peer, bound);
      const broken = reusedSocketFailure(err);
      // A connection that could not be made, or no answer in time, marks the peer down. A kept-alive
      // socket the peer closed (it restarted, say) fails one request and proves nothing about the next.
      if (translated instanceof ShardTimeoutError || !broken) {
        this.health.noteFailure(peer.address, translated instanceof ShardTimeoutError ? `no answer within ${bound} ms` : translated.reason);
      }
      // A write on a connection that broke may have reached the owner: its outcome is unknown, which a
      // 503 (retriable, nothing happened) would misstate.
      const lost = write && broken && translated instanceof ShardUnavailableError;
      this.count(peer.shard, lost ? 'connection_lost' : translated instanceof ShardTimeoutError ? 'timeout' : 'unavailable');
      if (lost) throw new ShardConnectionLostError(peer.shard, peer.address, translated.reason);
      throw translated;
    }
  }

  private count(shard: string, outcome: ForwardOutcome): void {
    let counts = this.outcomes.get(shard);
    if (counts === undefined) {
      counts = { answered: 0, unavailable: 0, timeout: 0, connection_lost: 0, skipped_down: 0 };
      this.outcomes.set(shard, counts);
    }
    counts[outcome]++;
  }

  private translate(err: unknown, peer: Peer, timeoutMs: number): ShardTimeoutError | ShardUnavailableError {
    if (err instanceof errors.HeadersTimeoutError || err instanceof errors.BodyTimeoutError) {
      return new ShardTimeoutError(peer.shard, peer.address, timeoutMs);
    }
    // A connection that could not be made was certainly not used: the request did not happen.
    if (err instanceof errors.ConnectTimeoutError)
      return new ShardUnavailableError(peer.shard, peer.address, `no connection within ${peerConnectTimeoutMs} ms`);
    const code = (err as { code?: string }).code ?? (err as Error).message;
    return new ShardUnavailableError(peer.shard, peer.address, code);
  }

  async close(): Promise<void> {
    await this.health.close();
    await Promise.all([...this.pools.values()].map((pool) => pool.destroy()));
    this.pools.clear();
  }
}

/** An error of a socket that was connected (closed or reset by the peer), not a failure to connect. */
function reusedSocketFailure(err: unknown): boolean {
  if (err instanceof errors.SocketError) return true;
  const code = (err as { code?: string }).code;
  return code === 'ECONNRESET' || code === 'EPIPE' || code === 'UND_ERR_SOCKET';
}

function relayedHeaders(source: Record<string, string | string[] | undefined>): string[] {
  const headers: string[] = [];
  for (const [name, value] of Object.entries(source)) {
    // The owner's X-Request-Id on an error answer names the line in its log.
    if ((name.startsWith('x-kv-') || name === 'content-type' || name === 'x-request-id') && value !== undefined) {
      headers.push(name, Array.isArray(value) ? value.join(', ') : value);
    }
  }
  return headers;
}
