// etcd's v3 API through its JSON gateway (`/v3/lease/*`, `/v3/kv/*`), over the undici pools every other
// peer request uses. Not the `etcd3` package: it adds gRPC to the dependencies and times leases its own
// way (its `lost` event comes only after twice the TTL), where kvshard needs every call bounded by its
// own timeout and the lease timed from the moment it sent the last keepalive that succeeded. Keys and
// values travel base64-encoded and 64-bit numbers as strings, as the gateway's JSON has them.

import { PeerPool } from './peer-pool.js';

export interface EtcdClientOptions {
  /** Client endpoints, `host:port`; a call that gets no answer from one tries the next. */
  readonly endpoints: readonly string[];
  /** Bound on each call at each endpoint. */
  readonly timeoutMs: number;
  /** Aborts every call in flight: the owner stops. */
  readonly signal: AbortSignal;
}

/** A key as etcd holds it. */
export interface EtcdKv {
  readonly key: string;
  readonly value: string;
  readonly createRevision: number;
  readonly modRevision: number;
  /** The lease the key is bound to; '0' for none. */
  readonly lease: string;
}

/** One compare of a transaction. */
export type EtcdCompare =
  | { readonly key: string; readonly target: 'CREATE' | 'MOD'; readonly revision: number }
  | { readonly key: string; readonly target: 'VALUE'; readonly value: string };

/** One operation of a transaction's branch. */
export type EtcdOp = { readonly put: string; readonly value: string; readonly lease?: string } | { readonly range: string } | { readonly delete: string };

export interface EtcdTxn {
  /** All must hold (EQUAL) for `success` to run; else `failure` runs. */
  readonly compare: readonly EtcdCompare[];
  readonly success: readonly EtcdOp[];
  readonly failure: readonly EtcdOp[];
}

export interface EtcdTxnReply {
  readonly succeeded: boolean;
  /** The keys each range of the branch that ran found, in order. */
  readonly ranges: readonly (readonly EtcdKv[])[];
  readonly revision: number;
}

/** etcd answered, but not with what the call needs (an error status or an unexpected shape). */
export class EtcdError extends Error {}

/** The largest answer a coordinator call gets: a few keys. */
const replyBytesMax = 256 * 1024;

const b64 = (text: string) => Buffer.from(text, 'utf8').toString('base64');
const unb64 = (text: unknown) => (typeof text === 'string' ? Buffer.from(text, 'base64').toString('utf8') : '');
const int = (text: unknown) => (typeof text === 'string' || typeof text === 'number' ? Number(text) : 0);

export class EtcdClient {
  private readonly pools: PeerPool[];
  /** The endpoint that answered last: calls start there. */
  private preferred = 0;
  /** The revision the last answer's header carried. */
  private lastRevision = 0;
  /** When (performance.now()) an answer last carried a lower revision than one before: etcd's data was lost or restored. */
  revisionWentBackAt: number | undefined;

  constructor(private readonly options: EtcdClientOptions) {
    if (options.endpoints.length === 0) throw new Error('an etcd client needs at least one endpoint');
    this.pools = options.endpoints.map((e) => new PeerPool(e, { connections: 2, timeoutMs: options.timeoutMs, replyBytesMax }));
  }

  /** Grants a lease of `ttlS` seconds (etcd's unit); resolves with its id. */
  async grantLease(ttlS: number): Promise<string> {
    const reply = await this.call('/v3/lease/grant', { TTL: ttlS });
    const id = reply['ID'];
    if (typeof id !== 'string' || int(reply['TTL']) <= 0) throw new EtcdError(`etcd granted no lease: ${JSON.stringify(reply).slice(0, 200)}`);
    return id;
  }

  /** Renews a lease once; resolves with the seconds it has left, 0 when etcd no longer has it. */
  async keepAlive(lease: string): Promise<number> {
    const reply = await this.call('/v3/lease/keepalive', { ID: lease });
    const result = reply['result'] as Record<string, unknown> | undefined;
    return int(result?.['TTL']);
  }

  /** Revokes a lease, deleting every key bound to it. */
  async revoke(lease: string): Promise<void> {
    await this.call('/v3/lease/revoke', { ID: lease });
  }

  /** The key, if it exists. */
  async get(key: string): Promise<EtcdKv | undefined> {
    const reply = await this.call('/v3/kv/range', { key: b64(key) });
    return decodeKvs(reply['kvs'])[0];
  }

  /** Runs one transaction: every compare EQUAL, then its success or its failure branch. */
  async txn(txn: EtcdTxn): Promise<EtcdTxnReply> {
    const reply = await this.call('/v3/kv/txn', {
      compare: txn.compare.map(encodeCompare),
      success: txn.success.map(encodeOp),
      failure: txn.failure.map(encodeOp),
    });
    const responses = Array.isArray(reply['responses']) ? (reply['responses'] as Record<string, unknown>[]) : [];
    const ranges = responses.filter((r) => r['response_range'] !== undefined).map((r) => decodeKvs((r['response_range'] as Record<string, unknown>)['kvs']));
    const header = reply['header'] as Record<string, unknown> | undefined;
    return { succeeded: reply['succeeded'] === true, ranges, revision: int(header?.['revision']) };
  }

  /** Closes every socket; calls in flight fail at once. */
  close(): void {
    for (const pool of this.pools) void pool.destroy().catch(() => undefined);
  }

  /**
   * Notes an answer's revision. A lower one than before means etcd's data was lost or restored; it may
   * also be two answers crossing, or a lagging etcd member, which is harmless here: the caller only
   * waits longer. From then on the new history's revisions are the ones compared.
   */
  private noteRevision(revision: unknown): void {
    const r = int(revision);
    if (r <= 0) return;
    if (r < this.lastRevision) this.revisionWentBackAt = performance.now();
    this.lastRevision = r;
  }

  /**
   * POSTs `body` to `path`, at the endpoint that answered last and then at each other one, until one
   * answers. An endpoint that answers with an error status is not tried past: etcd said no.
   */
  private async call(path: string, body: object): Promise<Record<string, unknown>> {
    let lastError: unknown;
    for (let i = 0; i < this.pools.length; i++) {
      const at = (this.preferred + i) % this.pools.length;
      let reply: Awaited<ReturnType<PeerPool['exchange']>>;
      try {
        reply = await this.pools[at]!.exchange({
          method: 'POST',
          path,
          headers: { 'content-type': 'application/json' },
          body: Buffer.from(JSON.stringify(body)),
          signal: this.options.signal,
        });
      } catch (err) {
        lastError = err;
        if (this.options.signal.aborted) break;
        continue;
      }
      this.preferred = at;
      let parsed: unknown;
      try {
        parsed = JSON.parse(reply.body.toString('utf8'));
      } catch {
        throw new EtcdError(`etcd at ${this.options.endpoints[at]} answered ${path} with HTTP ${reply.status} and no JSON`);
      }
      if (reply.status !== 200 || typeof parsed !== 'object' || parsed === null) {
        throw new EtcdError(`etcd at ${this.options.endpoints[at]} answered ${path} with HTTP ${reply.status}: ${JSON.stringify(parsed).slice(0, 200)}`);
      }
      this.noteRevision((parsed as { header?: { revision?: unknown } }).header?.revision);
      return parsed as Record<string, unknown>;
    }
    throw new EtcdError(`no etcd endpoint answered ${path} (${this.options.endpoints.join(', ')}): ${(lastError as Error | undefined)?.message ?? 'aborted'}`);
  }
}

function encodeCompare(c: EtcdCompare): object {
  if (c.target === 'VALUE') return { key: b64(c.key), target: 'VALUE', result: 'EQUAL', value: b64(c.value) };
  const field = c.target === 'CREATE' ? 'create_revision' : 'mod_revision';
  return { key: b64(c.key), target: c.target, result: 'EQUAL', [field]: String(c.revision) };
}

function encodeOp(op: EtcdOp): object {
  if ('put' in op) return { request_put: { key: b64(op.put), value: b64(op.value), ...(op.lease ? { lease: op.lease } : {}) } };
  if ('range' in op) return { request_range: { key: b64(op.range) } };
  return { request_delete_range: { key: b64(op.delete) } };
}

function decodeKvs(kvs: unknown): EtcdKv[] {
  if (!Array.isArray(kvs)) return [];
  return kvs.map((kv: Record<string, unknown>) => ({
    key: unb64(kv['key']),
    value: unb64(kv['value']),
    createRevision: int(kv['create_revision']),
    modRevision: int(kv['mod_revision']),
    lease: typeof kv['lease'] === 'string' ? kv['lease'] : '0',
  }));
}
