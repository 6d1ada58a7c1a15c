// KvClient: a kvshard client that routes by slot, like a Redis Cluster client. It fetches the cluster
// map once (GET /cluster), computes each key's slot and owner itself and sends the request straight to
// that node, with the x-kv-map header so that a node answers 421 moved instead of forwarding when the
// map is out of date. It follows moves, failovers and resizes without the caller doing anything, and
// retries only what is safe to retry (docs/client.md).

import { setMaxListeners } from 'node:events';
import { sleep } from '../core/backoff.js';
import { keySlot } from '../core/slots.js';
import { ackParam, intOption, keyBytesOf, normalEndpoint, valueBytesOf, valueParam } from './checks.js';
import type { ClusterMap, MapShard } from './cluster-map.js';
import { answerError, errorCode, KvClientError } from './errors.js';
import { MapSource, within, type Deadline, type RefreshHint } from './map-source.js';
import type { Answer } from './answer.js';
import { Transport } from './transport.js';

export type ReadFrom = 'primary' | 'replica' | 'any';

export interface KvClientOptions {
  /** Nodes to fetch the cluster map from, `host:port` or `http://host:port`; any member of the cluster will do. */
  readonly endpoints: readonly string[];
  /**
   * Where reads go: the key's primary (the default: reads its own writes, unless the primary cannot be
   * reached and its replica answers), its replica, or either in turn.
   */
  readonly readFrom?: ReadFrom;
  /** The deadline of one call, its retries included (default 5000 ms). */
  readonly timeoutMs?: number;
  /** How many times one call is retried at most (default 10). */
  readonly retries?: number;
  /**
   * false sends every request to the first endpoint, without the map header, as curl does: the nodes
   * forward. For comparisons (the benchmark); the default is true.
   */
  readonly routing?: boolean;
  /** Connections kept per node (default 16). */
  readonly connectionsPerNode?: number;
  /** Requests of one getMany() in flight at once (default 32). */
  readonly concurrency?: number;
}

export interface CallOptions {
  readonly signal?: AbortSignal;
}

/** Options of set() and delete(). */
export interface SetOptions extends CallOptions {
  /** primary (the default): answered once the primary committed it durably; replica: once its replica applied it too. */
  readonly ack?: 'primary' | 'replica';
}

export interface WriteResult {
  readonly key: string;
  readonly shard: string;
  readonly slot: number;
  /** The write's sequence number in its shard's replication log. */
  readonly seq: number;
  /** The shard's epoch when its primary acknowledged the write (docs/failover.md). */
  readonly epoch: number;
  /** What the write waited for: its primary's durable commit, or its replica's too. */
  readonly ack: 'primary' | 'replica';
}

export interface SetResult extends WriteResult {
  /** The value's length in bytes. */
  readonly bytes: number;
}

export interface DeleteResult extends WriteResult {
  /** Whether the key existed. */
  readonly deleted: boolean;
}

type Op = 'get' | 'set' | 'delete';

/** Where a failed attempt leaves the call. */
interface Next {
  readonly retry: boolean;
  /** Send the next attempt here (a moved answer's address, a member of the map). */
  readonly redirect?: string | undefined;
  /** Fetch the map again: in the background, or first (await) when the answer named a node the map does not have. */
  readonly refresh?: RefreshHint & { readonly await?: boolean };
  readonly wait?: boolean;
}

const giveUp: Next = { retry: false };
const defaults = { readFrom: 'primary' as ReadFrom, timeoutMs: 5000, retries: 10, connectionsPerNode: 16, concurrency: 32 };
/** The first and the longest pause between retries of one call; each pause doubles, with jitter. */
const backoffFirstMs = 20;
const backoffMaxMs = 1000;
/** A connection failure that happened before the request could be sent: safe to retry anything. */
const notSentCodes = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT']);
/** The exchange's deadline passed (undici's codes, and the transport's own timer's). */
const timeoutCodes = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);
/** 503 codes that say the request was not applied and a retry shortly may succeed. */
const retriable503 = new Set([
  'overloaded',
  'layout_pending',
  'primary_recovering',
  'failover_in_progress',
  'failover_unsettled',
  'epoch_unconfirmed',
  'epoch_behind',
  'no_majority',
  'promotion_pending',
  'starting',
  'shard_unavailable',
]);

/** A write's JSON answer; anything else from a node is not kvshard's. */
function parseResult<T>(answer: Answer): T {
  try {
    return JSON.parse(answer.body.toString('utf8')) as T;
  } catch {
    throw new KvClientError({ code: 'bad_answer', message: `${answer.node} answered 200 without a JSON body`, status: 200, node: answer.node });
  }
}

export class KvClient {
  private readonly endpoints: readonly string[];
  private readonly options: typeof defaults & { routing: boolean };
  private readonly transport: Transport;
  private readonly maps: MapSource;
  /** For readFrom 'any': which member the next read goes to; a random start, so short-lived clients do not all read primaries. */
  private turn = Math.random() < 0.5 ? 0 : 1;
  private closed = false;

  constructor(options: KvClientOptions) {
    if (!Array.isArray(options?.endpoints) || options.endpoints.length === 0) throw new TypeError('KvClient: endpoints must list at least one host:port');
    this.endpoints = options.endpoints.map(normalEndpoint);
    this.options = {
      readFrom: options.readFrom ?? defaults.readFrom,
      timeoutMs: intOption(options.timeoutMs, 'timeoutMs', 1, defaults.timeoutMs),
      retries: intOption(options.retries, 'retries', 0, defaults.retries),
      connectionsPerNode: intOption(options.connectionsPerNode, 'connectionsPerNode', 1, defaults.connectionsPerNode),
      concurrency: intOption(options.concurrency, 'concurrency', 1, defaults.concurrency),
      routing: options.routing ?? true,
    };
    if (!['primary', 'replica', 'any'].includes(this.options.readFrom)) throw new TypeError("KvClient: readFrom is 'primary', 'replica' or 'any'");
    this.transport = new Transport(this.options.connectionsPerNode);
    this.maps = new MapSource(this.endpoints, this.transport);
  }

  /** The key's value, or undefined when it is absent. */
  async get(key: string, options: CallOptions = {}): Promise<Buffer | undefined> {
    const answer = await this.call('get', key, undefined, '', options.signal);
    return answer.status === 404 ? undefined : answer.body;
  }

  async set(key: string, value: string | Uint8Array, options: SetOptions = {}): Promise<SetResult> {
    const bytes = valueBytesOf(value);
    const ack = ackParam(options.ack);
    const inQuery = valueParam(bytes);
    return parseResult(await this.call('set', key, inQuery === undefined ? bytes : undefined, inQuery === undefined ? ack : inQuery + ack, options.signal));
  }

  async delete(key: string, options: SetOptions = {}): Promise<DeleteResult> {
    return parseResult(await this.call('delete', key, undefined, ackParam(options.ack), options.signal));
  }

  /**
   * The values of `keys`, in their order (undefined for an absent key): one request per key, grouped by
   * the node that serves it, at most `concurrency` at once. The first error rejects the call and stops
   * the requests not yet sent.
   */
  async getMany(keys: readonly string[], options: CallOptions = {}): Promise<(Buffer | undefined)[]> {
    const slots = keys.map((key) => keySlot(keyBytesOf(key)));
    const deadline = this.deadline(options.signal);
    const routes = this.options.routing ? await this.maps.get(deadline) : undefined;
    const order = keys.map((_, i) => i);
    if (routes) {
      const shardOf = slots.map((slot) => routes.shardOfSlot(slot).idx);
      order.sort((a, b) => shardOf[a]! - shardOf[b]!);
    }
    // One signal for the whole call, ended by the caller's or by the first error: its listeners are one per request in flight.
    const stop = new AbortController();
    setMaxListeners(this.options.concurrency + 16, stop.signal);
    const onCallerAbort = () => stop.abort(options.signal!.reason);
    options.signal?.addEventListener('abort', onCallerAbort, { once: true });
    const results: (Buffer | undefined)[] = new Array(keys.length);
    let next = 0;
    const worker = async () => {
      while (next < order.length && !stop.signal.aborted) {
        const i = order[next++]!;
        results[i] = await this.get(keys[i]!, { signal: stop.signal });
      }
    };
    try {
      await Promise.all(
        Array.from({ length: Math.min(this.options.concurrency, order.length) }, () =>
          worker().catch((err: unknown) => {
            stop.abort(err);
            throw err;
          }),
        ),
      );
    } finally {
      options.signal?.removeEventListener('abort', onCallerAbort);
    }
    return results;
  }

  /** The cluster map, fetched now. */
  async cluster(options: CallOptions = {}): Promise<ClusterMap> {
    return (await within(this.maps.refresh({}), this.deadline(options.signal))).map;
  }

  /** Closes the client's connections; calls after it fail with `aborted`. */
  async close(): Promise<void> {
    this.closed = true;
    await this.transport.close();
  }

  private deadline(signal: AbortSignal | undefined): Deadline {
    return { at: Date.now() + this.options.timeoutMs, signal };
  }

  /** One call: routed, sent, and retried as its answers allow, within its deadline. */
  private async call(op: Op, key: string, value: Buffer | undefined, extra: string, signal: AbortSignal | undefined): Promise<Answer> {
    if (this.closed) throw new KvClientError({ code: 'aborted', message: 'the client is closed' });
    const slot = keySlot(keyBytesOf(key));
    const deadline = this.deadline(signal);
    const path = `/${op}?key=${encodeURIComponent(key)}${extra}`;
    let redirect: string | undefined;
    let avoid: string | undefined;
    let last: KvClientError | undefined;
    let movesInARow = 0;
    for (let attempt = 0; attempt <= this.options.retries; attempt++) {
      const outcome = await this.attempt(op, slot, path, value, redirect ?? avoid, redirect !== undefined, deadline);
      if (!(outcome instanceof KvClientError)) return outcome;
      last = outcome;
      const next = this.next(op, last);
      if (!next.retry || attempt === this.options.retries) break;
      redirect = next.redirect;
      avoid = last.code === 'unavailable' ? last.node : undefined;
      movesInARow = last.code === 'moved' ? movesInARow + 1 : 0;
      await this.refreshFor(next, deadline);
      // Two nodes that keep pointing at each other (their configs disagree) get a pause, not a burst.
      if (next.wait || movesInARow > 1) await this.pause(attempt, deadline);
      if (signal?.aborted || Date.now() >= deadline.at) {
        if (signal?.aborted || last.code !== 'unavailable') last = this.failure(signal?.reason, last.node, deadline, op);
        break;
      }
    }
    throw last!;
  }

  /** Fetches the map again as `next` says: first, or in the background while the call goes on. */
  private async refreshFor(next: Next, deadline: Deadline): Promise<void> {
    if (next.refresh?.await) await within(this.maps.refresh(next.refresh), deadline).catch(() => undefined);
    else if (next.refresh) this.maps.invalidate(next.refresh);
  }

  /** One attempt of a call: its answer, or the error it ended with. `node` is a redirect (exact) or a node to avoid. */
  private async attempt(
    op: Op,
    slot: number,
    path: string,
    value: Buffer | undefined,
    node: string | undefined,
    exact: boolean,
    deadline: Deadline,
  ): Promise<Answer | KvClientError> {
    let target: string | undefined;
    try {
      const current = this.options.routing ? this.maps.get(deadline) : undefined;
      const routes = current instanceof Promise ? await current : current;
      const shard = routes?.shardOfSlot(slot);
      target = exact ? node! : shard ? this.target(op, shard, node) : this.endpoints[0]!;
      const headers: Record<string, string> = shard ? { 'x-kv-map': `${routes!.map.layout_id} ${shard.epoch}` } : {};
      if (value !== undefined) headers['content-type'] = 'application/octet-stream';
      const method = op === 'get' ? 'GET' : 'POST';
      const answer = await this.transport.exchange({
        node: target,
        method,
        path,
        headers,
        body: value,
        timeoutMs: Math.max(1, deadline.at - Date.now()),
        signal: deadline.signal,
      });
      if (answer.status === 200 || (answer.status === 404 && op === 'get' && answerError(answer).code === 'not_found')) return answer;
      return answerError(answer);
    } catch (err) {
      return this.failure(err, target, deadline, op);
    }
  }

  /** What a call does after an error: whether to retry, where, after a pause or not, and whether to fetch the map again. */
  private next(op: Op, err: KvClientError): Next {
    switch (err.code) {
      case 'moved':
        return this.afterMoved(err);
      case 'not_primary':
      case 'read_only_replica':
        return { retry: true, refresh: { prefer: err.node } };
      // The node runs another layout than the one it was asked under: its peers will tell it, or the map will.
      case 'wrong_shard':
        return { retry: true, refresh: {}, wait: true };
      case 'unavailable':
        return { retry: true, refresh: { avoid: err.node }, wait: true };
      // A request whose connection broke may have been applied; set and delete leave the same value when
      // applied twice, so it is sent again, as Redis Cluster clients resend what a lost connection left
      // unanswered (a node closing an idle kept-alive connection as a request arrives is the usual case).
      case 'connection_lost':
        return { retry: true, wait: true };
      case 'bad_answer':
        return op === 'get' ? { retry: true, refresh: { avoid: err.node }, wait: true } : giveUp;
      default:
        if (err.status === 503 && retriable503.has(err.code) && !err.committed) {
          return { retry: true, wait: true, ...(err.code === 'shard_unavailable' ? { refresh: {} } : {}) };
        }
        return giveUp;
    }
  }

  /**
   * After 421 moved: retry at the address it names when the map has that node. The map is fetched again
   * unless it already says what the answer says (a replica sending a read to its primary); when the
   * answer names a node the map lacks (a shard a resize added), the new map is fetched before the retry.
   */
  private afterMoved(err: KvClientError): Next {
    const { address, layout_id: layout, shard, epoch } = err.details;
    const map = this.maps.current?.map;
    const hint = { prefer: err.node, layout: typeof layout === 'string' ? layout : undefined };
    if (typeof address !== 'string' || map === undefined || !this.maps.current!.names(address)) return { retry: true, refresh: { ...hint, await: true } };
    const upToDate = map.layout_id === layout && map.shards.some((s) => s.name === shard && s.epoch === epoch && s.primary === address);
    return { retry: true, redirect: address, ...(upToDate ? {} : { refresh: hint }) };
  }

  /** A thrown error (from the network, the deadline or the caller) as the call's error. */
  private failure(err: unknown, node: string | undefined, deadline: Deadline, op: Op): KvClientError {
    if (err instanceof KvClientError) return err;
    const effect = op === 'get' ? '' : '; the write may or may not have been applied';
    if (deadline.signal?.aborted) return new KvClientError({ code: 'aborted', message: `the call was aborted${effect}`, node, cause: err });
    const code = errorCode(err);
    if (Date.now() >= deadline.at || (code !== undefined && timeoutCodes.has(code))) {
      return new KvClientError({ code: 'timeout', message: `no answer within ${this.options.timeoutMs} ms${effect}`, node, cause: err });
    }
    if (code !== undefined && notSentCodes.has(code)) {
      return new KvClientError({ code: 'unavailable', message: `${node ?? 'the cluster'} is unreachable (${code})`, node, cause: err });
    }
    if (this.closed) return new KvClientError({ code: 'aborted', message: `the client was closed${effect}`, node, cause: err });
    const why = code ?? (err as Error)?.message;
    return new KvClientError({ code: 'connection_lost', message: `the connection to ${node} broke (${why})${effect}`, node, cause: err });
  }

  /** Waits before a retry: capped exponential backoff with jitter, never past the deadline, ended early by an abort. */
  private pause(attempt: number, deadline: Deadline): Promise<void> {
    const cap = Math.min(backoffMaxMs, backoffFirstMs * 2 ** attempt);
    return sleep(Math.min(cap / 2 + Math.random() * (cap / 2), Math.max(0, deadline.at - Date.now())), deadline.signal);
  }

  /** The node a request for `shard` goes to: writes to its primary, reads as readFrom says; a read avoids a member it could not reach. */
  private target(op: Op, shard: MapShard, avoid: string | undefined): string {
    if (op !== 'get') return shard.primary;
    const readFrom = this.options.readFrom;
    let node = readFrom === 'primary' ? shard.primary : readFrom === 'replica' ? shard.replica : this.turn++ % 2 === 0 ? shard.primary : shard.replica;
    if (node === avoid) node = node === shard.primary ? shard.replica : shard.primary;
    return node;
  }
}
