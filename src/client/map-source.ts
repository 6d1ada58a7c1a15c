// Where a client's cluster map comes from: fetched once, then again when a node's answer says it is out
// of date. One fetch at a time, shared by every call waiting for it and tied to none of their signals,
// so one caller's abort never fails another's call; each waiter stops waiting at its own deadline.

import { checkMap, mergeMaps, Routes } from './cluster-map.js';
import { answerError, KvClientError } from './errors.js';
import type { Transport } from './transport.js';

/** When a call gives up (ms since the epoch), and the caller's signal that ends it sooner. */
export interface Deadline {
  readonly at: number;
  readonly signal: AbortSignal | undefined;
}

/** What a refresh knows about where a newer map is. */
export interface RefreshHint {
  /** A node to ask first: the one that answered moved runs the layout that routed the request away. */
  readonly prefer?: string | undefined;
  /** A node to ask last: it just failed. */
  readonly avoid?: string | undefined;
  /** The layout a moved answer named: a map of another layout is taken only when no node has this one. */
  readonly layout?: string | undefined;
}

/** The longest wait for one node's /cluster answer before trying the next node. */
const fetchTimeoutMs = 2000;
/** The longest one fetch of the map takes, over every node it tries. */
const fetchBudgetMs = 10_000;
/** A map holds addresses and epochs: far less than this even for thousands of shards. */
const mapBytesMax = 1024 * 1024;

/** Waits for `promise` until the deadline or the caller's abort, whichever comes first. */
export function within<T>(promise: Promise<T>, deadline: Deadline): Promise<T> {
  return new Promise((resolve, reject) => {
    const done = () => {
      clearTimeout(timer);
      deadline.signal?.removeEventListener('abort', aborted);
    };
    const aborted = () => {
      done();
      reject(deadline.signal!.reason);
    };
    const timer = setTimeout(
      () => {
        done();
        reject(new KvClientError({ code: 'timeout', message: 'no cluster map before the deadline' }));
      },
      Math.max(0, deadline.at - Date.now()),
    );
    if (deadline.signal?.aborted) return aborted();
    deadline.signal?.addEventListener('abort', aborted, { once: true });
    promise.then(
      (value) => {
        done();
        resolve(value);
      },
      (err: unknown) => {
        done();
        reject(err);
      },
    );
  });
}

export class MapSource {
  private routes: Routes | undefined;
  private fetching: Promise<Routes> | undefined;

  constructor(
    private readonly endpoints: readonly string[],
    private readonly transport: Transport,
  ) {}

  /** The routes of the newest map, if one was fetched. */
  get current(): Routes | undefined {
    return this.routes;
  }

  /** The routes of the newest map, fetching one first when there is none yet. */
  get(deadline: Deadline): Routes | Promise<Routes> {
    return this.routes ?? within(this.refresh({}), deadline);
  }

  /** Fetches the map again now (joining a fetch under way). */
  refresh(hint: RefreshHint): Promise<Routes> {
    this.fetching ??= this.fetch(hint).finally(() => {
      this.fetching = undefined;
    });
    return this.fetching;
  }

  /** Starts a fetch in the background unless one is under way: the calls go on with the map they have. */
  invalidate(hint: RefreshHint): void {
    if (this.fetching === undefined) this.refresh(hint).catch(() => undefined);
  }

  private candidates(hint: RefreshHint): string[] {
    const all = [...(hint.prefer ? [hint.prefer] : []), ...this.endpoints, ...(this.routes?.addresses() ?? [])];
    const unique = [...new Set(all)].filter((node) => node !== hint.avoid);
    return hint.avoid !== undefined && all.includes(hint.avoid) ? [...unique, hint.avoid] : unique;
  }

  private async fetch(hint: RefreshHint): Promise<Routes> {
    const candidates = this.candidates(hint);
    const until = Date.now() + fetchBudgetMs;
    let fallback: Routes | undefined;
    let last: unknown;
    for (const node of candidates) {
      const left = until - Date.now();
      if (left <= 0) break;
      try {
        const answer = await this.transport.exchange({
          node,
          method: 'GET',
          path: '/cluster',
          headers: {},
          body: undefined,
          timeoutMs: Math.min(fetchTimeoutMs, left),
          signal: undefined,
          replyBytesMax: mapBytesMax,
        });
        if (answer.status !== 200) throw answerError(answer);
        const routes = new Routes(mergeMaps(this.routes?.map, checkMap(JSON.parse(answer.body.toString('utf8')), node)));
        if (hint.layout === undefined || routes.map.layout_id === hint.layout) {
          this.routes = routes;
          return routes;
        }
        fallback ??= routes;
      } catch (err) {
        last = err;
      }
    }
    if (fallback !== undefined) {
      this.routes = fallback;
      return fallback;
    }
    const why = last instanceof Error ? last.message : String(last);
    throw new KvClientError({
      code: last instanceof KvClientError && last.code === 'bad_answer' ? 'bad_answer' : 'unavailable',
      message: `no node answered /cluster (tried ${candidates.join(', ')}): ${why}`,
      cause: last,
    });
  }
}
