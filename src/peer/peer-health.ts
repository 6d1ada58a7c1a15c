// Which peers this node currently treats as down. A peer that just failed (refused the connection,
// was unreachable, or did not answer in time) is skipped until a background probe finds it answering
// again, so that one dead or black-holed host costs one timeout, not one per request.

import { sleep } from '../core/backoff.js';
import { internalReplyBytesMax, peerProbeIntervalMs, peerProbeTimeoutMs } from '../core/limits.js';
import { PeerPool } from './peer-pool.js';
import type { Log } from '../core/log.js';

interface DownPeer {
  readonly since: number;
  lastError: string;
  probe: Promise<void> | undefined;
}

export interface PeerState {
  readonly state: 'up' | 'down';
  readonly since: string;
  readonly last_error: string | null;
}

export class PeerHealth {
  private readonly down = new Map<string, DownPeer>();
  /** When each peer last changed state, for /status. */
  private readonly changedAt = new Map<string, number>();
  private readonly abort = new AbortController();
  private closed = false;

  constructor(private readonly log: Log) {}

  /** Why `address` is treated as down, or undefined when it is not. */
  downReason(address: string): string | undefined {
    const peer = this.down.get(address);
    return peer && `marked down since ${new Date(peer.since).toISOString()} (${peer.lastError}); probing`;
  }

  /** Notes a request to `address` that worked. */
  noteUp(address: string): void {
    if (!this.changedAt.has(address)) this.changedAt.set(address, Date.now());
  }

  /** Notes a failed request to `address`: from now on it is down until a probe answers. */
  noteFailure(address: string, reason: string): void {
    if (this.closed) return;
    const peer = this.down.get(address);
    if (peer) {
      peer.lastError = reason;
      return;
    }
    const now = Date.now();
    this.log.warn(`peer ${address} is down (${reason}): reads go to the other member of its shard, writes get 503, until it answers again`);
    const entry: DownPeer = { since: now, lastError: reason, probe: undefined };
    this.down.set(address, entry);
    this.changedAt.set(address, now);
    entry.probe = this.probeUntilUp(address);
  }

  status(): Record<string, PeerState> {
    const out: Record<string, PeerState> = {};
    for (const [address, at] of this.changedAt) {
      const peer = this.down.get(address);
      out[address] = { state: peer ? 'down' : 'up', since: new Date(at).toISOString(), last_error: peer?.lastError ?? null };
    }
    return out;
  }

  /** Asks GET /health every peerProbeIntervalMs until the peer answers or this node closes. */
  private async probeUntilUp(address: string): Promise<void> {
    const pool = new PeerPool(address, { connections: 1, timeoutMs: peerProbeTimeoutMs, replyBytesMax: internalReplyBytesMax });
    try {
      while (!this.closed) {
        await sleep(peerProbeIntervalMs, this.abort.signal);
        if (this.closed) return;
        try {
          const res = await pool.exchange({ method: 'GET', path: '/health', headers: {}, signal: this.abort.signal });
          if (res.status === 200) break;
        } catch {
          // still down: probed again after the interval
        }
      }
      if (this.closed) return;
      this.down.delete(address);
      this.changedAt.set(address, Date.now());
      this.log.info(`peer ${address} answers again`);
    } finally {
      await pool.destroy().catch(() => undefined);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.abort.abort();
    await Promise.all([...this.down.values()].map((peer) => peer.probe));
  }
}
