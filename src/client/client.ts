// KvClient: a kvshard client that routes by slot, like a Redis Cluster client. It fetches the cluster
// map once (GET /cluster), computes each key's slot and owner itself and sends the request straight to
// that node, with the x-kv-map header so that a node answers 421 moved instead of forwarding when the
// map is out of date. It follows moves, failovers and resizes without the caller doing anything, and
// retries only what is safe to retry (docs/client.md).

import { keyBytesMax, valueBytesMax } from '../core/limits.js';
import { keySlot } from '../core/slots.js';
import { checkMap, mergeMaps, Routes, type ClusterMap, type MapShard } from './cluster-map.js';
import { answerError, errorCode, KvClientError } from './errors.js';
import { Transport, type Answer } from './transport.js';

export type ReadFrom = 'primary' | 'replica' | 'any';

export interface KvClientOptions {
  /** Nodes to fetch the cluster map from, `host:port` or `http://host:port`; any member of the cluster will do. */
  readonly endpoints: readonly string[];
  /** Where reads go: the key's primary (the default, reads its own writes), its replica, or either in turn. */
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
}

export interface DeleteResult extends WriteResult {
  /**
   * Whether the key existed. A delete retried after its connection broke may say false for a key the
   * first attempt removed.
   */
  readonly deleted: boolean;
}

type Op = 'get' | 'set' | 'delete';

/** When a call gives up (ms since the epoch), and the caller's signal that ends it sooner. */
interface Deadline {
  readonly at: number;
  readonly signal: AbortSignal | undefined;
  /** What an error says of the call's effect: a write may or may not have been applied; a read changes nothing. */
  readonly unknownEffect: string;
}

/** Where a failed attempt leaves the call. */
type Next = { readonly retry: true; readonly redirect?: string; readonly refresh: boolean; readonly wait: boolean } | { readonly retry: false };

const defaults = { readFrom: 'primary' as ReadFrom, timeoutMs: 5000, retries: 10, connectionsPerNode: 16, concurrency: 32 };
/** The first and the longest pause between retries of one call; each pause doubles, with jitter. */
const backoffFirstMs = 20;
const backoffMaxMs = 1000;
/** The longest wait for one node's /cluster answer before trying the next node. */
const mapFetchTimeoutMs = 2000;
/** A connection failure that happened before the request could be sent: safe to retry anything. */
const notSentCodes = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT']);
/** undici's timeouts: the call's deadline passed while waiting for an answer. */
const timeoutCodes = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);
/** 503 codes that say the request was not applied and a retry shortly may succeed. */
const retriable503 = new Set([
  'overloaded',
  'layout_pending',
  'primary_recovering',
  'failover_in_progress',
  'epoch_unconfirmed',
  'starting',
  'shard_unavailable',
]);

function normalEndpoint(endpoint: string): string {
  const address = endpoint.replace(/^https?:\/\//, '').replace(/\/+$/, '');
  if (!/^[^\s/:]+:\d{1,5}$/.test(address)) throw new TypeError(`KvClient: endpoint ${JSON.stringify(endpoint)} is not host:port`);
  return address;
}

/** A key as the server requires it: 1 to keyBytesMax bytes of UTF-8 from well-formed text. */
function keyBytesOf(key: string): Buffer {
  // \p{Cs} matches only a lone surrogate: with the u flag a pair is one code point.
  if (typeof key !== 'string' || key === '' || /\p{Cs}/u.test(key)) {
    throw new KvClientError({ code: 'bad_request', message: 'a key is a non-empty string of well-formed Unicode text' });
  }
  const bytes = Buffer.from(key, 'utf8');
  if (bytes.length > keyBytesMax)
    throw new KvClientError({ code: 'bad_request', message: `key is ${bytes.length} bytes; a key is at most ${keyBytesMax} bytes` });
  return bytes;
}

function valueBytesOf(value: string | Uint8Array): Buffer {
  const bytes = typeof value === 'string' ? Buffer.from(value, 'utf8') : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (bytes.length > valueBytesMax) {
    throw new KvClientError({ code: 'payload_too_large', message: `value is ${bytes.length} bytes; a value is at most ${valueBytesMax} bytes` });
  }
  return bytes;
}

/** The ack parameter of a write's URL; none for the server's default (primary). */
function ackParam(ack: SetOptions['ack']): string {
  if (ack === undefined) return '';
  if (ack !== 'primary' && ack !== 'replica') throw new TypeError("KvClient: ack is 'primary' or 'replica'");
  return `&ack=${ack}`;
}

export class KvClient {
  private readonly endpoints: readonly string[];
  private readonly options: typeof defaults & { routing: boolean };
  private readonly transport: Transport;
  private routes: Routes | undefined;
  private fetching: Promise<Routes> | undefined;
  /** For readFrom 'any': which member the next read goes to. */
  private turn = 0;
  private closed = false;

  constructor(options: KvClientOptions) {
    if (!Array.isArray(options.endpoints) || options.endpoints.length === 0) throw new TypeError('KvClient: endpoints must list at least one host:port');
    this.endpoints = options.endpoints.map(normalEndpoint);
    this.options = {
      readFrom: options.readFrom ?? defaults.readFrom,
      timeoutMs: options.timeoutMs ?? defaults.timeoutMs,
      retries: options.retries ?? defaults.retries,
      connectionsPerNode: options.connectionsPerNode ?? defaults.connectionsPerNode,
      concurrency: options.concurrency ?? defaults.concurrency,
      routing: options.routing ?? true,
    };
    if (!['primary', 'replica', 'any'].includes(this.options.readFrom)) throw new TypeError("KvClient: readFrom is 'primary', 'replica' or 'any'");
    this.transport = new Transport(this.options.connectionsPerNode);
  }

  /** The key's value, or undefined when it is absent. */
  async get(key: string, options: CallOptions = {}): Promise<Buffer | undefined> {
    const answer = await this.call('get', key, undefined, '', options.signal);
    return answer.status === 404 ? undefined : answer.body;
  }

  async set(key: string, value: string | Uint8Array, options: SetOptions = {}): Promise<WriteResult> {
    const answer = await this.call('set', key, valueBytesOf(value), ackParam(options.ack), options.signal);
    return JSON.parse(answer.body.toString('utf8')) as WriteResult;
  }

  async delete(key: string, options: SetOptions = {}): Promise<DeleteResult> {
    const answer = await this.call('delete', key, undefined, ackParam(options.ack), options.signal);
    return JSON.parse(answer.body.toString('utf8')) as DeleteResult;
  }

  /**
   * The values of `keys`, in their order (undefined for an absent key): one request per key, sent to
   * each key's node, at most `concurrency` at once. The first error rejects the whole call.
   */
  async getMany(keys: readonly string[], options: CallOptions = {}): Promise<(Buffer | undefined)[]> {
    for (const key of keys) keyBytesOf(key);
    const results: (Buffer | undefined)[] = new Array(keys.length);
    // Keys grouped by node, so each node's requests go out together on its kept-alive connections.
    const routes = this.options.routing ? await this.currentRoutes(options.signal) : undefined;
    const order = keys.map((_, i) => i);
    if (routes) {
      const node = (i: number) => routes.shardOfSlot(keySlot(Buffer.from(keys[i]!, 'utf8'))).idx;
      order.sort((a, b) => node(a) - node(b));
    }
    let next = 0;
    const worker = async () => {
      while (next < order.length) {
        const i = order[next++]!;
        results[i] = await this.get(keys[i]!, options);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.options.concurrency, order.length) }, worker));
    return results;
  }

  /** The cluster map, fetched now. */
  async cluster(options: CallOptions = {}): Promise<ClusterMap> {
    return (await this.refresh(undefined, options.signal)).map;
  }

  /** Closes the client's connections; calls after it fail. */
  async close(): Promise<void> {
    this.closed = true;
    await this.transport.close();
  }

  /** One call: routed, sent, and retried as its answers allow, within its deadline. */
  private async call(op: Op, key: string, value: Buffer | undefined, extra: string, signal: AbortSignal | undefined): Promise<Answer> {
    if (this.closed) throw new KvClientError({ code: 'aborted', message: 'the client is closed' });
    const slot = keySlot(keyBytesOf(key));
    const deadline: Deadline = {
      at: Date.now() + this.options.timeoutMs,
      signal,
      unknownEffect: op === 'get' ? '' : '; the write may or may not have been applied',
    };
    const path = `/${op}?key=${encodeURIComponent(key)}${extra}`;
    let redirect: string | undefined;
    let avoid: string | undefined;
    let last: KvClientError | undefined;
    for (let attempt = 0; attempt <= this.options.retries; attempt++) {
      const outcome = await this.attempt(op, slot, path, value, redirect, avoid, deadline);
      if (!(outcome instanceof KvClientError)) return outcome;
      last = outcome;
      const next = this.next(op, last);
      if (!next.retry || attempt === this.options.retries) break;
      redirect = next.redirect;
      avoid = next.redirect === undefined && last.code === 'unavailable' ? last.node : undefined;
      if (next.refresh) this.invalidate(redirect ?? last.node);
      if (next.wait) await this.pause(attempt, deadline);
      if (signal?.aborted || Date.now() >= deadline.at) {
        last = this.failure(signal?.reason, last.node, deadline);
        break;
      }
    }
    throw last!;
  }

  /** One attempt of a call: its answer, or the error it ended with. */
  private async attempt(
    op: Op,
    slot: number,
    path: string,
    value: Buffer | undefined,
    redirect: string | undefined,
    avoid: string | undefined,
    deadline: Deadline,
  ): Promise<Answer | KvClientError> {
    let node: string | undefined;
    try {
      const routes = this.options.routing ? await this.currentRoutes(deadline.signal) : undefined;
      const shard = routes?.shardOfSlot(slot);
      node = redirect ?? (shard ? this.target(op, shard, avoid) : this.endpoints[0]!);
      const headers: Record<string, string> = shard ? { 'x-kv-map': `${routes!.map.layout_id} ${shard.epoch}` } : {};
      if (value !== undefined) headers['content-type'] = 'application/octet-stream';
      const answer = await this.transport.exchange({
        node,
        method: op === 'get' ? 'GET' : 'POST',
        path,
        headers,
        body: value,
        timeoutMs: Math.max(1, deadline.at - Date.now()),
        signal: deadline.signal,
      });
      if (answer.status === 200 || (answer.status === 404 && op === 'get' && this.isNotFound(answer))) return answer;
      return answerError(answer);
    } catch (err) {
      return this.failure(err, node, deadline);
    }
  }

  /** A 404 answer to a get is an absent key only when it says not_found (an unknown path is also 404). */
  private isNotFound(answer: Answer): boolean {
    return answerError(answer).code === 'not_found';
  }

  /** What a call does after an error: retry at once, retry after a pause, and whether to fetch the map again. */
  private next(op: Op, err: KvClientError): Next {
    switch (err.code) {
      case 'moved': {
        const address = err.details['address'];
        return { retry: true, redirect: typeof address === 'string' ? address : undefined, refresh: true, wait: false };
      }
      case 'not_primary':
      case 'read_only_replica':
        return { retry: true, refresh: true, wait: false };
      // The node runs another layout than the one it was asked under: its peers will tell it, or the map will.
      case 'wrong_shard':
        return { retry: true, refresh: true, wait: true };
      case 'unavailable':
        return { retry: true, refresh: true, wait: true };
      // Retrying a set or delete whose connection broke is safe for its value (both are idempotent); a delete may then say deleted: false.
      case 'connection_lost':
        return { retry: true, refresh: false, wait: true };
      default:
        if (err.status === 503 && retriable503.has(err.code) && !err.committed) return { retry: true, refresh: err.code === 'shard_unavailable', wait: true };
        return op === 'get' && err.code === 'bad_answer' ? { retry: true, refresh: true, wait: true } : { retry: false };
    }
  }

  /** A thrown error (from the network, the deadline or the caller) as the call's error. */
  private failure(err: unknown, node: string | undefined, deadline: Deadline): KvClientError {
    if (err instanceof KvClientError) return err;
    if (deadline.signal?.aborted) return new KvClientError({ code: 'aborted', message: `the call was aborted${deadline.unknownEffect}`, node, cause: err });
    const code = errorCode(err);
    if (Date.now() >= deadline.at || (code !== undefined && timeoutCodes.has(code))) {
      return new KvClientError({
        code: 'timeout',
        message: `no answer within ${this.options.timeoutMs} ms${deadline.unknownEffect}`,
        node,
        cause: err,
      });
    }
    if (code !== undefined && notSentCodes.has(code))
      return new KvClientError({ code: 'unavailable', message: `${node ?? 'the cluster'} is unreachable (${code})`, node, cause: err });
    return new KvClientError({
      code: 'connection_lost',
      message: `the connection to ${node} broke (${code ?? (err as Error)?.message})${deadline.unknownEffect}`,
      node,
      cause: err,
    });
  }

  /** Waits before a retry: capped exponential backoff with jitter, never past the deadline, ended early by an abort. */
  private pause(attempt: number, deadline: Deadline): Promise<void> {
    const cap = Math.min(backoffMaxMs, backoffFirstMs * 2 ** attempt);
    const ms = Math.min(cap / 2 + Math.random() * (cap / 2), Math.max(0, deadline.at - Date.now()));
    const signal = deadline.signal;
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  /** The node a request for `shard` goes to: writes to its primary, reads as readFrom says. */
  private target(op: Op, shard: MapShard, avoid: string | undefined): string {
    if (op !== 'get') return shard.primary;
    const readFrom = this.options.readFrom;
    let node = readFrom === 'primary' ? shard.primary : readFrom === 'replica' ? shard.replica : this.turn++ % 2 === 0 ? shard.primary : shard.replica;
    // A read that could not reach one member tries the other.
    if (node === avoid) node = node === shard.primary ? shard.replica : shard.primary;
    return node;
  }

  private async currentRoutes(signal: AbortSignal | undefined): Promise<Routes> {
    return this.routes ?? this.refresh(undefined, signal);
  }

  /** Marks the map out of date: the next call fetches it, from `preferred` first (the node that said moved knows a newer one). */
  private invalidate(preferred: string | undefined): void {
    if (this.fetching === undefined) void this.refresh(preferred, undefined).catch(() => undefined);
  }

  /** Fetches the map (one fetch at a time), from `preferred`, then the endpoints, then every member the map names. */
  private refresh(preferred: string | undefined, signal: AbortSignal | undefined): Promise<Routes> {
    this.fetching ??= this.fetchMap(preferred, signal).finally(() => {
      this.fetching = undefined;
    });
    return this.fetching;
  }

  private async fetchMap(preferred: string | undefined, signal: AbortSignal | undefined): Promise<Routes> {
    const candidates = [...new Set([...(preferred ? [preferred] : []), ...this.endpoints, ...(this.routes?.addresses() ?? [])])];
    let last: KvClientError | undefined;
    for (const node of candidates) {
      const deadline: Deadline = { at: Date.now() + mapFetchTimeoutMs, signal, unknownEffect: '' };
      try {
        const answer = await this.transport.exchange({
          node,
          method: 'GET',
          path: '/cluster',
          headers: {},
          body: undefined,
          timeoutMs: mapFetchTimeoutMs,
          signal,
        });
        if (answer.status !== 200) throw answerError(answer);
        const map = checkMap(JSON.parse(answer.body.toString('utf8')), node);
        this.routes = new Routes(mergeMaps(this.routes?.map, map));
        return this.routes;
      } catch (err) {
        last = this.failure(err, node, deadline);
        if (signal?.aborted) throw last;
      }
    }
    throw new KvClientError({
      code: last?.code === 'bad_answer' ? 'bad_answer' : 'unavailable',
      message: `no node answered /cluster (tried ${candidates.join(', ')}): ${last?.message}`,
      node: last?.node,
      cause: last,
    });
  }
}
