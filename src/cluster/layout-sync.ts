// How nodes agree on the cluster layout across a resize and a rolling restart.
//
// Every node, on start, tells each peer (every primary and replica of the current and, during a
// migration, the previous layout) which layout it runs and which one it migrates from, and reads the
// peer's answer. Two rules follow:
// - Stale nodes stop serving. A node that learns the cluster has moved on from its own layout (a peer
//   migrates from it) answers every data request with 421 wrong_shard until it is restarted with the
//   new sharding.toml: it never serves a read the new owner would answer differently, nor accepts a
//   write the new owner would not see.
// - Only members the node's own config names count. An announcement carries the sender's address, and a
//   node acts on it only when its own sharding.toml gives that address to the shard and role the sender
//   claims; an answer counts only from the address the node asked. One process started with a wrong
//   config (another address, say) cannot take the others out of service.
// - A stale node serves again once the member that made it stale answers with another layout and no
//   member it reaches runs the newer layout any more (the new layout was abandoned). It asks every few
//   seconds while it refuses.
// - A primary that starts with no layout of its own (a shard just added) learns from the first peer on
//   its layout that knows whether keys are moving to it and from where. Until then it answers requests
//   for its own keys with 503 layout_pending, since they may still be on their previous owner. When no
//   other primary holds any key (all as new as itself), the cluster is new and nothing moves.

import { Backoff, sleep } from '../core/backoff.js';
import type { ServerResponse } from 'node:http';
import express, { type Router } from 'express';
import { canonicalAddress, type ShardConfig } from '../core/config.js';
import type { ClusterView, EpochNews, LayoutAnnouncement, LayoutAnswer } from './cluster-view.js';
import { BadRequestError } from '../core/errors.js';
import { sendJson, type BodyRequest } from '../core/http-reply.js';
import {
  failoverRequestTimeoutMs,
  heartbeatsPerNodeTimeout,
  layoutAnnounceAttemptsMax,
  layoutBodyBytesMax,
  layoutRecheckMs,
  layoutSocketsMax,
  migrationBackoffFirstMs,
  migrationBackoffMaxMs,
  migrationRequestTimeoutMs,
} from '../core/limits.js';
import { decodeLayoutRecord } from './migration.js';
import { InternalClient } from '../peer/internal-client.js';
import type { Log } from '../core/log.js';

export const layoutPath = '/internal/layout';

/** The internal endpoint every node serves: read a peer's announcement, answer with this node's layout. */
export function layoutRouter(view: ClusterView): Router {
  const router = express.Router();
  router.post(layoutPath, express.json({ limit: layoutBodyBytesMax }), (req: BodyRequest, res: ServerResponse) => {
    const body = req.body as Partial<LayoutAnnouncement> | undefined;
    if (
      typeof body?.from !== 'string' ||
      typeof body.address !== 'string' ||
      typeof body.layoutId !== 'string' ||
      (body.previousLayoutId !== null && typeof body.previousLayoutId !== 'string')
    ) {
      throw new BadRequestError('a layout announcement needs from, address, layoutId and previousLayoutId');
    }
    const trusted = view.trusts(body.from, body.address);
    if (trusted) {
      view.heardEpochs(body.address, body as EpochNews, `${body.from} at ${body.address}`, performance.now());
      view.markStale(body.from, body.address, body.layoutId, body.previousLayoutId);
    }
    sendJson(res, 200, view.answer());
    if (trusted) view.peerAnnounced();
  });
  return router;
}

function decodeAnswer(raw: unknown): LayoutAnswer {
  const a = raw as Record<string, unknown> | null;
  if (typeof a !== 'object' || a === null || typeof a['node'] !== 'string' || typeof a['decided'] !== 'boolean' || !Number.isSafeInteger(a['keys'])) {
    throw new Error('malformed layout answer');
  }
  return {
    node: a['node'] as string,
    decided: a['decided'] as boolean,
    layout: decodeLayoutRecord(a['layout'], 'layout'),
    migratingFrom: a['migratingFrom'] === null ? null : decodeLayoutRecord(a['migratingFrom'], 'migratingFrom'),
    keys: a['keys'] as number,
    // Checked entry by entry where they are learned (ClusterView.learnEpochs, decodeGrants).
    epochs: (a['epochs'] ?? {}) as LayoutAnswer['epochs'],
    epochsKnown: a['epochsKnown'] === true,
    grants: (a['grants'] ?? {}) as LayoutAnswer['grants'],
  };
}

/** A peer's answer, with when (performance.now()) this node sent the request it answers. */
type Exchanged = LayoutAnswer & { readonly sentAt: number };

export interface LayoutSyncOptions {
  readonly view: ClusterView;
  /** This node's own address, left out of its peers. */
  readonly self: string;
  readonly token: string;
  readonly log: Log;
  /** Every answer from a peer, for a primary still learning its layout. */
  readonly onAnswer: (peer: ShardConfig, role: 'primary' | 'replica', answer: LayoutAnswer) => void | Promise<void>;
}

/** Announces this node's layout to every peer (bounded retries each) and passes their answers on. */
export class LayoutSync {
  private readonly http: InternalClient;
  /** For a broadcast, which a failover waits for: a silent peer costs failoverRequestTimeoutMs, not a migration's timeout. */
  private readonly quick: InternalClient;
  private readonly abort = new AbortController();
  private readonly tasks = new Set<Promise<void>>();
  private closed = false;
  private recheck: Promise<void> | undefined;
  private periodic: Promise<void> | undefined;

  constructor(private readonly options: LayoutSyncOptions) {
    this.http = new InternalClient({
      token: options.token,
      timeoutMs: migrationRequestTimeoutMs,
      replyBytesMax: layoutBodyBytesMax,
      socketsMax: layoutSocketsMax,
      signal: this.abort.signal,
    });
    this.quick = new InternalClient({
      token: options.token,
      timeoutMs: failoverRequestTimeoutMs,
      replyBytesMax: layoutBodyBytesMax,
      socketsMax: layoutSocketsMax,
      signal: this.abort.signal,
    });
  }

  /** Every node of the current layout and of the previous one while migrating, except this one. */
  private peers(): { shard: ShardConfig; role: 'primary' | 'replica'; address: string }[] {
    const { view } = this.options;
    const shards = [...view.config.shards, ...(view.migration?.previous.shards ?? [])];
    const seen = new Set([this.options.self]);
    const peers = [];
    for (const shard of shards) {
      for (const role of ['primary', 'replica'] as const) {
        const address = role === 'primary' ? shard.address : shard.replica;
        if (seen.has(address)) continue;
        seen.add(address);
        peers.push({ shard, role, address });
      }
    }
    return peers;
  }

  /** Starts a round of announcements unless one is under way (a peer that just started answers now). */
  announceIfIdle(): void {
    if (this.tasks.size === 0 && !this.closed) this.announce();
  }

  /** Starts one round of announcements; each peer is tried until it answers once. */
  announce(): void {
    for (const peer of this.peers()) {
      const task = this.announceTo(peer.shard, peer.role, peer.address).finally(() => this.tasks.delete(task));
      this.tasks.add(task);
    }
  }

  /** Tells `address` this node's layout once; resolves with its answer, or undefined when it gives none. */
  private async exchange(shard: ShardConfig, address: string, http = this.http): Promise<Exchanged | undefined> {
    try {
      const sentAt = performance.now();
      const response = await http.post<unknown>(address, layoutPath, this.options.view.announcement(this.options.self));
      if (response.status !== 200) return undefined;
      const answer = decodeAnswer(response.data);
      // The answer counts only from the member this node's config puts at that address.
      return answer.node.split('/')[0] === shard.name ? { ...answer, sentAt } : undefined;
    } catch {
      return undefined;
    }
  }

  private async announceTo(shard: ShardConfig, role: 'primary' | 'replica', address: string): Promise<void> {
    const backoff = new Backoff(migrationBackoffFirstMs, migrationBackoffMaxMs, this.abort.signal);
    for (let attempt = 0; attempt < layoutAnnounceAttemptsMax && !this.closed; attempt++) {
      const answer = await this.exchange(shard, address);
      if (answer) return this.heard(shard, role, address, answer);
      if (this.closed) return;
      await backoff.wait();
    }
  }

  /** What a peer's answer tells this node: its epochs, whether this node is stale, and the rest for the role. */
  private async heard(shard: ShardConfig, role: 'primary' | 'replica', address: string, answer: Exchanged): Promise<void> {
    const { view } = this.options;
    view.heardEpochs(address, answer, `${answer.node} at ${address}`, performance.now(), answer.sentAt);
    if (answer.layout.layoutId === view.config.layoutId) view.peerMigrates(address, answer.migratingFrom);
    view.markStale(answer.node, address, answer.layout.layoutId, answer.migratingFrom?.layoutId ?? null);
    await this.options.onAnswer(shard, role, answer);
  }

  /**
   * Exchanges epochs and layouts with every peer once, now (a failover tells the cluster this way).
   * Resolves with how many answered, of how many, and the addresses that did not.
   */
  async broadcastNow(): Promise<{ reached: number; peers: number; missed: string[] }> {
    const peers = this.peers();
    const missed: string[] = [];
    await Promise.all(
      peers.map(async (peer) => {
        const answer = await this.exchange(peer.shard, peer.address, this.quick);
        if (!answer || this.closed) {
          missed.push(peer.address);
          return;
        }
        await this.heard(peer.shard, peer.role, peer.address, answer);
      }),
    );
    return { reached: peers.length - missed.length, peers: peers.length, missed };
  }

  /**
   * Heartbeats: exchanges epochs and layouts with every peer heartbeatsPerNodeTimeout times per node
   * timeout, for as long as the node runs. Each peer has at most one exchange in flight, with the
   * interval as its timeout, so a silent peer never delays the others. This is how a primary knows it
   * still hears from a majority (ClusterView.writeFence), how a granter knows how long the primary has
   * been silent, and how a node that missed a failover learns of it.
   */
  exchangePeriodically(): void {
    if (this.periodic || this.closed) return;
    const intervalMs = Math.max(50, Math.floor(this.options.view.config.nodeTimeoutMs / heartbeatsPerNodeTimeout));
    const beats = new InternalClient({
      token: this.options.token,
      timeoutMs: intervalMs,
      replyBytesMax: layoutBodyBytesMax,
      socketsMax: 1,
      signal: this.abort.signal,
    });
    const inFlight = new Set<string>();
    this.periodic = (async () => {
      while (!this.closed) {
        await sleep(intervalMs, this.abort.signal);
        if (this.closed) break;
        for (const peer of this.peers()) {
          if (inFlight.has(peer.address)) continue;
          inFlight.add(peer.address);
          void this.exchange(peer.shard, peer.address, beats)
            .then((answer) => (answer && !this.closed ? this.heard(peer.shard, peer.role, peer.address, answer) : undefined))
            .catch((err: unknown) => this.options.log.warn(`heartbeat to ${peer.address}: ${(err as Error).message}`))
            .finally(() => inFlight.delete(peer.address));
        }
      }
      beats.close();
    })();
  }

  /**
   * While this node is stale, asks every member each layoutRecheckMs which layout it runs, and serves
   * again once the member that made it stale runs another layout and no member it reaches runs the
   * newer one (a stray node with a newer config was stopped, say). A member it cannot reach proves
   * nothing, so the member that fenced it must answer.
   */
  recheckWhileFenced(): void {
    if (this.recheck || this.closed) return;
    const { view } = this.options;
    this.recheck = (async () => {
      while (!this.closed && view.fence) {
        await sleep(layoutRecheckMs, this.abort.signal);
        const fence = view.fence;
        if (this.closed || !fence) break;
        const answers = await Promise.all(this.peers().map(async (peer) => ({ peer, answer: await this.exchange(peer.shard, peer.address) })));
        const fencer = answers.find((a) => canonicalAddress(a.peer.address) === canonicalAddress(fence.byAddress))?.answer;
        const newerStillRuns = answers.some((a) => a.answer?.layout.layoutId === fence.layoutId);
        if (fencer && fencer.layout.layoutId !== fence.layoutId && !newerStillRuns) {
          view.clearStale(`${fencer.node} at ${fence.byAddress} runs layout ${fencer.layout.layoutId} now, and no member reached runs ${fence.layoutId}`);
        }
      }
      this.recheck = undefined;
    })();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.abort.abort();
    await Promise.allSettled([...this.tasks, this.recheck, this.periodic]);
    this.http.close();
    this.quick.close();
  }
}
