// How nodes agree on the cluster layout across a resize and a rolling restart.
//
// Every node, on start, tells each peer (every primary and replica of the current and, during a
// migration, the previous layout) which layout it runs and which one it migrates from, and reads the
// peer's answer. Two rules follow:
// - Stale nodes stop serving. A node that learns the cluster has moved on from its own layout (a peer
//   migrates from it) answers every data request with 421 wrong_shard until it is restarted with the
//   new sharding.toml: it never serves a read the new owner would answer differently, nor accepts a
//   write the new owner would not see.
// - A primary that starts with no layout of its own (a shard just added) learns from the first peer on
//   its layout that knows whether keys are moving to it and from where. Until then it answers requests
//   for its own keys with 503 layout_pending, since they may still be on their previous owner. When no
//   other primary holds any key (all as new as itself), the cluster is new and nothing moves.

import { setTimeout as sleep } from 'node:timers/promises';
import type { ServerResponse } from 'node:http';
import express, { type Router } from 'express';
import type { Config, LayoutRecord, ShardConfig } from './config.js';
import { BadRequestError } from './errors.js';
import { sendJson, type BodyRequest } from './http-api.js';
import { layoutAnnounceAttemptsMax, layoutBodyBytesMax, migrationBackoffFirstMs, migrationBackoffMaxMs, migrationRequestTimeoutMs } from './limits.js';
import { decodeLayoutRecord, type Migration } from './migration.js';
import { internalClient, type InternalClient } from './internal-client.js';

export const layoutPath = '/internal/layout';

export interface LayoutAnnouncement {
  /** `<shard>/<role>` of the sender. */
  readonly from: string;
  readonly topologyId: string;
  /** The layout the sender migrates from, if it is migrating. */
  readonly previousTopologyId: string | null;
}

export interface LayoutAnswer {
  readonly node: string;
  /** Whether this node knows its layout history (false: a primary just added, still learning). */
  readonly decided: boolean;
  readonly layout: LayoutRecord;
  /** The layout this node migrates from, while its migration runs. */
  readonly migratingFrom: LayoutRecord | null;
  /** Keys this node holds. */
  readonly keys: number;
}

/** One node's view of the layout: what it runs, whether it is stale, and its migration if any. */
export class ClusterView {
  /** Why this node must not serve data requests (it runs an outdated layout), if it must not. */
  fenced: string | undefined;
  /** Whether a replica's primary runs another layout: set from its replication messages. */
  primaryMismatch: string | undefined;
  /** On a replica: whether its primary said keys may still be moving to it (undefined: not heard yet). */
  primaryMigrating: boolean | undefined;
  /** Called when a peer announces itself (a node still learning its layout asks it again). */
  onPeerAnnounced: (() => void) | undefined;
  migration: Migration | undefined;

  constructor(
    readonly config: Config,
    /** This node's own layout: the config's, or for a draining shard its previous one plus the config's topology. */
    readonly layout: LayoutRecord,
    readonly node: string,
    /** False for a primary just added that still has to learn whether keys move to it. */
    public decided: boolean,
    private readonly log: (message: string) => void,
    private readonly keyCount: () => number,
  ) {}

  /** The reason this node refuses data requests, if any. */
  refusal(): string | undefined {
    return this.fenced ?? this.primaryMismatch;
  }

  announcement(): LayoutAnnouncement {
    return { from: this.node, topologyId: this.config.topologyId, previousTopologyId: this.migration?.active() ? this.migration.previous.topologyId : null };
  }

  answer(): LayoutAnswer {
    return {
      node: this.node,
      decided: this.decided,
      layout: this.layout,
      migratingFrom: this.migration?.active() ? this.migration.previous : null,
      keys: this.keyCount(),
    };
  }

  /** A peer migrates away from this node's layout: this node is stale. */
  noteStale(peer: string, peerTopologyId: string, previousTopologyId: string | null): void {
    if (this.fenced || previousTopologyId !== this.config.topologyId || peerTopologyId === this.config.topologyId) return;
    this.fenced =
      `${this.node} runs topology ${this.config.topologyId} (${this.config.file}), but ${peer} has moved the cluster on to ` +
      `topology ${peerTopologyId}; restart this node with the new sharding.toml`;
    this.log(`refusing data requests from now on: ${this.fenced}`);
  }
}

/** The internal endpoint every node serves: read a peer's announcement, answer with this node's layout. */
export function layoutRouter(view: ClusterView): Router {
  const router = express.Router();
  router.post(layoutPath, express.json({ limit: layoutBodyBytesMax }), (req: BodyRequest, res: ServerResponse) => {
    const body = req.body as Partial<LayoutAnnouncement> | undefined;
    if (typeof body?.from !== 'string' || typeof body.topologyId !== 'string' || (body.previousTopologyId !== null && typeof body.previousTopologyId !== 'string')) {
      throw new BadRequestError('a layout announcement needs from, topologyId and previousTopologyId');
    }
    view.noteStale(body.from, body.topologyId, body.previousTopologyId);
    sendJson(res, 200, view.answer());
    view.onPeerAnnounced?.();
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
  };
}

export interface LayoutSyncOptions {
  readonly view: ClusterView;
  /** This node's own address, left out of its peers. */
  readonly self: string;
  readonly token: string;
  readonly log: (message: string) => void;
  /** Every answer from a peer, for a primary still learning its layout. */
  readonly onAnswer: (peer: ShardConfig, role: 'primary' | 'replica', answer: LayoutAnswer) => void | Promise<void>;
}

/** Announces this node's layout to every peer (bounded retries each) and passes their answers on. */
export class LayoutSync {
  private readonly http: InternalClient;
  private readonly abort = new AbortController();
  private readonly tasks = new Set<Promise<void>>();
  private closed = false;

  constructor(private readonly options: LayoutSyncOptions) {
    this.http = internalClient({
      token: options.token,
      timeoutMs: migrationRequestTimeoutMs,
      replyBytesMax: layoutBodyBytesMax,
      socketsMax: 4,
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

  private async announceTo(shard: ShardConfig, role: 'primary' | 'replica', address: string): Promise<void> {
    let backoff = migrationBackoffFirstMs;
    for (let attempt = 0; attempt < layoutAnnounceAttemptsMax && !this.closed; attempt++) {
      try {
        const response = await this.http.client.post(`http://${address}${layoutPath}`, this.options.view.announcement());
        if (response.status === 200) {
          const answer = decodeAnswer(response.data);
          this.options.view.noteStale(answer.node, answer.layout.topologyId, answer.migratingFrom?.topologyId ?? null);
          await this.options.onAnswer(shard, role, answer);
          return;
        }
      } catch {
        // not reachable yet: retried below
      }
      if (this.closed) return;
      await sleep(backoff, undefined, { signal: this.abort.signal }).catch(() => undefined);
      backoff = Math.min(backoff * 2, migrationBackoffMaxMs);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.abort.abort();
    await Promise.allSettled([...this.tasks]);
    this.http.close();
  }
}
