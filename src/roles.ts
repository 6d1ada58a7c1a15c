// What a node does with a data request, by role. The role is chosen once at start-up
// (primaryRole or replicaRole), so no handler asks "am I a replica?".
//
// Routing is the same for both: the key's slot names its owning shard. A key this node's shard owns is
// served locally; any other key is forwarded once, and a forwarded request for a key this node does not
// own is refused with 421 rather than forwarded again.

import type { Config, ShardConfig } from './config.js';
import type { DataReply, DataRequest } from './data-request.js';
import { BadRequestError, NotFoundError, ReadOnlyReplicaError, ShardUnavailableError, WrongShardError } from './errors.js';
import type { Forwarder } from './forwarder.js';
import { replicaAckTimeoutMs } from './limits.js';
import type { ReplicationSender } from './replication-sender.js';
import type { Mutation, Store } from './store.js';

export type RoleName = 'primary' | 'replica';

export interface Role {
  readonly name: RoleName;
  /** Local reads answer synchronously; writes and forwarded requests return a promise. */
  handle(req: DataRequest): DataReply | Promise<DataReply>;
}

export interface RoleContext {
  readonly config: Config;
  readonly shard: ShardConfig;
  readonly store: Store;
  readonly forwarder: Forwarder;
  /** The primary's replication task; undefined on a replica. */
  readonly sender: ReplicationSender | undefined;
}

function ownerOf(ctx: RoleContext, slot: number): ShardConfig {
  return ctx.config.shards[ctx.config.slotOwners[slot]!]!;
}

function refuseMisrouted(ctx: RoleContext, req: DataRequest, role: RoleName, owner: ShardConfig): never {
  const sender = req.forwarded!;
  throw new WrongShardError(
    `${req.forwarded!.by} (topology ${sender.topologyId}) forwarded slot ${req.slot} to ${ctx.shard.name}/${role}, ` +
      `but this node's config (${ctx.config.file}, topology ${ctx.config.topologyId}) assigns it to ${owner.name}; ` +
      'the two nodes run different configs',
    {
      slot: req.slot,
      this_node: { shard: ctx.shard.name, role, topology: ctx.config.topologyId, owner: owner.name },
      sender: { node: sender.by, topology: sender.topologyId },
    },
  );
}

/** Response headers of this node's own answers, built once per role. */
function replyHeaders(ctx: RoleContext, role: RoleName, contentType: string): readonly string[] {
  return Object.freeze(['x-kv-shard', ctx.shard.name, 'x-kv-role', role, 'content-type', contentType]);
}

function json(headers: readonly string[], body: unknown): DataReply {
  return { status: 200, headers, body: JSON.stringify(body) };
}

function readLocal(ctx: RoleContext, headers: readonly string[], req: DataRequest): DataReply {
  const value = ctx.store.get(req.slot, req.key);
  if (value === undefined) {
    throw new NotFoundError(`key ${JSON.stringify(req.keyText)} not found`, { key: req.keyText, shard: ctx.shard.name });
  }
  return { status: 200, headers, body: value };
}

/** `ack=primary` (the default) answers after the primary's durable commit; `ack=replica` also waits for the replica. */
function ackMode(req: DataRequest): 'primary' | 'replica' {
  const ack = req.extra.get('ack') ?? 'primary';
  if (ack !== 'primary' && ack !== 'replica') throw new BadRequestError(`parameter ack must be primary or replica, got ${JSON.stringify(ack)}`);
  return ack;
}

async function writeLocal(ctx: RoleContext, jsonHeaders: readonly string[], req: DataRequest): Promise<DataReply> {
  const ack = ackMode(req);
  const mutation: Mutation =
    req.op === 'set'
      ? { type: 'set', slot: req.slot, key: req.key, value: req.value! }
      : { type: 'delete', slot: req.slot, key: req.key };
  const { applied: [applied], seq } = await ctx.store.commit([mutation]);
  ctx.sender!.notify();
  if (ack === 'replica') await ctx.sender!.waitForReplica(seq, replicaAckTimeoutMs);
  const base = { key: req.keyText, shard: ctx.shard.name, slot: req.slot, seq, ack };
  return req.op === 'set' ? json(jsonHeaders, { ...base, bytes: req.value!.length }) : json(jsonHeaders, { ...base, deleted: applied });
}

export function primaryRole(ctx: RoleContext): Role {
  const valueHeaders = replyHeaders(ctx, 'primary', 'application/octet-stream');
  const jsonHeaders = replyHeaders(ctx, 'primary', 'application/json');
  return {
    name: 'primary',
    handle(req) {
      const owner = ownerOf(ctx, req.slot);
      if (owner.idx !== ctx.shard.idx) {
        if (req.forwarded) refuseMisrouted(ctx, req, 'primary', owner);
        return ctx.forwarder.forward({ shard: owner.name, address: owner.address }, req);
      }
      return req.op === 'get' ? readLocal(ctx, valueHeaders, req) : writeLocal(ctx, jsonHeaders, req);
    },
  };
}

export function replicaRole(ctx: RoleContext): Role {
  const valueHeaders = replyHeaders(ctx, 'replica', 'application/octet-stream');
  return {
    name: 'replica',
    handle(req) {
      if (req.op !== 'get') throw new ReadOnlyReplicaError(ctx.shard.name, ctx.shard.address);
      const owner = ownerOf(ctx, req.slot);
      if (owner.idx === ctx.shard.idx) {
        if (ctx.store.replicaInSync()) return readLocal(ctx, valueHeaders, req);
        // Before its first full resync ends, this replica's data is incomplete: its primary answers.
        return ctx.forwarder.forward({ shard: owner.name, address: owner.address }, req);
      }
      if (req.forwarded) refuseMisrouted(ctx, req, 'replica', owner);
      // Reads stay on replicas where possible, so a read-heavy load does not fall on the primaries;
      // the owner's primary answers when its replica is unreachable.
      return ctx.forwarder.forward({ shard: owner.name, address: owner.replica }, req).catch((err: unknown) => {
        if (!(err instanceof ShardUnavailableError)) throw err;
        return ctx.forwarder.forward({ shard: owner.name, address: owner.address }, req);
      });
    },
  };
}
