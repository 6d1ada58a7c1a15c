// GET /dashboard: one page that shows the whole cluster, and GET /dashboard/state, the JSON it polls.
// The node serving the page gathers the state itself, so the browser talks to one origin: it asks every
// member of the config for its /status (all at once, each with a short timeout) and keeps a short
// history of each member's request count and time for the page's sparklines. It samples only while a
// page has asked lately, so an unwatched dashboard costs nothing.

import type { IncomingMessage, ServerResponse } from 'node:http';
import express, { type Router } from 'express';
import type { Config } from '../core/config.js';
import { sleep } from '../core/backoff.js';
import { sendJson } from '../core/http-reply.js';
import { adminReplyBytesMax, dashboardFetchTimeoutMs, dashboardIdleMs, dashboardSampleMs, dashboardSamplesMax } from '../core/limits.js';
import { describeError } from '../core/errors.js';
import { InternalClient } from '../peer/internal-client.js';
import { allowMethods } from '../server/http-api.js';
import { dashboardPage } from './dashboard-page.js';

/** One point of a member's sparklines. */
interface Point {
  /** Seconds since the epoch. */
  readonly t: number;
  /** Requests per second since the previous sample. */
  readonly rps: number;
  /** Mean request time in milliseconds since the previous sample (null when none were served). */
  readonly ms: number | null;
}

interface MemberState {
  readonly member: 'a' | 'b';
  readonly address: string;
  up: boolean;
  error: string | null;
  status: Record<string, unknown> | null;
  history: Point[];
  last: { at: number; served: number; seconds: number } | undefined;
}

export interface DashboardOptions {
  readonly config: Config;
  /** This node's address, marked in the page. */
  readonly self: string;
  /** The cluster secret, which every request of the node's internal client carries. */
  readonly token: string;
}

export class Dashboard {
  private readonly members: MemberState[];
  private lastAsked = 0;
  private sampler: Promise<void> | undefined;
  private firstRound: Promise<void> | undefined;
  private readonly abort = new AbortController();
  /** Each member's /status within dashboardFetchTimeoutMs and a bounded reply, over kept-alive sockets. */
  private readonly http: InternalClient;

  constructor(private readonly options: DashboardOptions) {
    this.http = new InternalClient({
      token: options.token,
      timeoutMs: dashboardFetchTimeoutMs,
      replyBytesMax: adminReplyBytesMax,
      socketsMax: 1,
      signal: this.abort.signal,
    });
    this.members = options.config.shards.flatMap((s) => [
      { member: 'a' as const, address: s.address, up: false, error: 'not asked yet', status: null, history: [], last: undefined },
      { member: 'b' as const, address: s.replica, up: false, error: 'not asked yet', status: null, history: [], last: undefined },
    ]);
  }

  router(): Router {
    const router = express.Router({ caseSensitive: true });
    allowMethods(router, '/dashboard', 'GET', 'HEAD');
    router.get('/dashboard', (_req: IncomingMessage, res: ServerResponse) => {
      res.writeHead(200, {
        'content-type': 'text/html; charset=utf-8',
        'content-length': Buffer.byteLength(dashboardPage),
        // The page loads nothing from elsewhere, and nothing may frame it.
        'content-security-policy': "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'",
        'cache-control': 'no-store',
      });
      res.end(dashboardPage);
    });
    allowMethods(router, '/dashboard/state', 'GET', 'HEAD');
    router.get('/dashboard/state', (_req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => {
      this.state().then((state) => sendJson(res, 200, state), next);
    });
    return router;
  }

  /** The cluster as the page shows it; the first call after a quiet spell samples at once. */
  async state(): Promise<Record<string, unknown>> {
    this.lastAsked = Date.now();
    // One sampler for every page watching; the first answer waits for its first round.
    this.sampler ??= this.sampleWhileWatched();
    await this.firstRound;
    return this.view();
  }

  private async sampleWhileWatched(): Promise<void> {
    this.firstRound = this.sample();
    await this.firstRound;
    while (!this.abort.signal.aborted && Date.now() - this.lastAsked < dashboardIdleMs) {
      await sleep(dashboardSampleMs, this.abort.signal);
      if (this.abort.signal.aborted) break;
      await this.sample();
    }
    this.sampler = undefined;
  }

  /** Asks every member for its /status at once, each within dashboardFetchTimeoutMs. */
  private async sample(): Promise<void> {
    await Promise.all(
      this.members.map(async (m) => {
        try {
          const reply = await this.http.get<Record<string, unknown>>(m.address, '/status');
          if (reply.status !== 200 || reply.data === undefined) throw new Error(`/status answered ${reply.status}`);
          const status = reply.data;
          m.up = true;
          m.error = null;
          m.status = status;
          this.record(m, status);
        } catch (err) {
          m.up = false;
          m.error = describeError(err);
          m.last = undefined;
        }
      }),
    );
  }

  private record(m: MemberState, status: Record<string, unknown>): void {
    const requests = (status['requests'] ?? {}) as Record<string, unknown>;
    const served = typeof requests['served'] === 'number' ? requests['served'] : undefined;
    const seconds = typeof requests['served_seconds'] === 'number' ? requests['served_seconds'] : 0;
    const now = Date.now();
    if (served === undefined) return;
    const last = m.last;
    m.last = { at: now, served, seconds };
    // A restarted member counts from zero again: no point for that interval.
    if (last === undefined || served < last.served || now <= last.at) return;
    const count = served - last.served;
    m.history.push({ t: now / 1000, rps: count / ((now - last.at) / 1000), ms: count > 0 ? ((seconds - last.seconds) / count) * 1000 : null });
    if (m.history.length > dashboardSamplesMax) m.history.splice(0, m.history.length - dashboardSamplesMax);
  }

  /** Shards with their members, the epoch and primary the highest epoch any member reports. */
  private view(): Record<string, unknown> {
    const shards = this.options.config.shards.map((s, i) => {
      const members = this.members.slice(i * 2, i * 2 + 2);
      let epoch: { epoch: number; primary: string; kind: string | null; at: string | null } | undefined;
      for (const m of members) {
        const e = ((m.status?.['epochs'] ?? {}) as Record<string, { epoch?: number; primary?: string; kind?: string; at?: string | null }>)[s.name];
        if (typeof e?.epoch === 'number' && typeof e.primary === 'string' && (epoch === undefined || e.epoch > epoch.epoch)) {
          epoch = { epoch: e.epoch, primary: e.primary, kind: e.kind ?? null, at: e.at ?? null };
        }
      }
      return {
        name: s.name,
        idx: s.idx,
        epoch: epoch?.epoch ?? null,
        primary: epoch?.primary ?? null,
        // Why the epoch began (initial, switchover, forced, lease_expired ...) and when.
        epoch_kind: epoch?.kind ?? null,
        epoch_at: epoch?.at ?? null,
        members: members.map((m) => ({
          member: m.member,
          address: m.address,
          self: m.address === this.options.self,
          up: m.up,
          error: m.error,
          history: m.history,
          // A member that is down shows no numbers: the last ones it gave may be stale. Its role is the last known.
          ...summary(m.up ? m.status : null),
          role: (m.status?.['role'] as string | undefined) ?? null,
        })),
      };
    });
    return { at: new Date().toISOString(), served_by: this.options.self, sample_ms: dashboardSampleMs, shards };
  }

  close(): void {
    this.abort.abort();
    this.http.close();
  }
}

/** What the page shows of a member's /status. */
function summary(status: Record<string, unknown> | null): Record<string, unknown> {
  if (status === null) return { role: null };
  const primary = status['role'] === 'primary';
  const replication = (primary ? status['replication'] : status) as Record<string, unknown> | undefined;
  const migration = status['migration'] as Record<string, unknown> | null | undefined;
  return {
    role: status['role'] ?? null,
    epoch: status['epoch'] ?? null,
    keys: status['keys'] ?? null,
    last_seq: primary ? (status['last_seq'] ?? null) : (status['primary_seq'] ?? null),
    applied_seq: replication?.['applied_seq'] ?? null,
    lag_entries: replication?.['lag_entries'] ?? null,
    lag_seconds: replication?.['lag_seconds'] ?? null,
    // With a coordinator: whether the member holds its shard's key, and how long its lease still lets it acknowledge writes.
    coordinator: status['coordinator'] ?? null,
    in_sync: primary ? (replication?.['reachable'] ?? null) : (status['in_sync'] ?? null),
    migration: migration
      ? {
          state: migration['state'],
          slots_to_send: migration['slots_to_send'],
          slots_sent: migration['slots_sent'],
          slots_to_receive: migration['slots_to_receive'],
          slots_received: migration['slots_received'],
        }
      : null,
  };
}
