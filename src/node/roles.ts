// What a node does with a data request, by role. The role is chosen once at start-up (primaryRole,
// replicaRole or drainRole, built by role-factories.ts), so no handler asks "am I a replica?".
//
// Routing is the same for both: the key's slot names its owning shard. A key this node's shard owns is
// served locally; any other key is forwarded once, and a forwarded request for a key this node does not
// own is refused with 421 rather than forwarded again.

import { configName, type Config, type RoleName, type ShardConfig } from '../core/config.js';
import type { DataReply, DataRequest } from '../core/data-request.js';
import {
  BadRequestError,
  LayoutPendingError,
  MovedError,
  NotFoundError,
  NotPrimaryError,
  PrimaryRecoveringError,
  ReadOnlyReplicaError,
  ShardUnavailableError,
  WriteOutcomeUnknownError,
  WrongShardError,
  WritesPausedError,
} from '../core/errors.js';
import type { Forwarder } from '../peer/forwarder.js';
import type { ClusterView } from '../cluster/cluster-view.js';
import { otherMember } from '../cluster/epochs.js';
import type { MemberState } from '../cluster/member-role.js';
import { ackVerdict, writeVerdict } from '../cluster/write-verdict.js';
import { parameterNameCharsMax, replicaAckTimeoutMs } from '../core/limits.js';
import type { PrimaryRecovery } from '../replication/primary-recovery.js';
import type { ReplicationSender } from '../replication/replication-sender.js';
import type { DataHandler } from '../server/http-api.js';
import type { Mutation } from '../storage/keys.js';
import type { Store } from '../storage/store.js';

/** A role answers the server's data requests (see DataHandler) and says which role it is. */
export interface Role extends DataHandler {
  readonly name: RoleName;
}

/** What every role's handler reads. */
export interface RoleContext {
  readonly config: Config;
  /** This node's shard as its config lists it. */
  readonly shard: ShardConfig;
  /** This node's own address: one of the shard's two members. */
  readonly address: string;
  readonly store: Store;
  readonly forwarder: Forwarder;
  readonly view: ClusterView;
}

/** A primary's handler also owns its replication task and its start-up check with its replica. */
export interface PrimaryContext extends RoleContext {
  readonly sender: ReplicationSender;
  readonly recovery: PrimaryRecovery;
  /** The member's role, epoch, pause and confirmation, as member-role.ts decides them (see member.ts). */
  readonly member: { readonly state: MemberState };
}

/** A node that runs an outdated layout (or whose primary runs another one) refuses with 421. */
function refuseIfStale(ctx: RoleContext, role: RoleName): void {
  const reason = ctx.view.refusal();
  if (reason) throw new WrongShardError(reason, { this_node: { shard: ctx.shard.name, role, layout_id: ctx.config.layoutId }, retriable: true });
}

/** The shard that owns `slot`, as it stands now: `address` is its current primary. */
function ownerOf(ctx: RoleContext, slot: number): ShardConfig {
  return ctx.view.shardNow(ctx.config.slotOwners[slot]!);
}

/**
 * The answer to a routing client's request that this node would have to send elsewhere: 421 moved,
 * naming `owner` as it stands now; the request goes to its primary, which answers every request of its keys.
 */
function moved(ctx: RoleContext, req: DataRequest, owner: ShardConfig): MovedError {
  const shard = { name: owner.name, primary: owner.address, replica: owner.replica, epoch: ctx.view.epochOf(owner.name).epoch };
  return new MovedError(req.slot, shard, owner.address, ctx.config.layoutId);
}

/**
 * A write that reached a member of its shard that is not the primary now: 421 not_primary when another
 * node forwarded it (that node retries at the primary named), 421 moved for a routing client, 403
 * read_only_replica for anyone else.
 */
function notPrimary(ctx: RoleContext, req: DataRequest): NotPrimaryError | ReadOnlyReplicaError | MovedError {
  const epoch = ctx.view.epochOf(ctx.shard.name);
  if (req.clientMap !== undefined && !req.forwarded) return moved(ctx, req, ctx.view.shardNow(ctx.shard.idx));
  return req.forwarded ? new NotPrimaryError(ctx.shard.name, epoch.primary, epoch.epoch) : new ReadOnlyReplicaError(ctx.shard.name, epoch.primary, epoch.epoch);
}

/**
 * Why a primary's own write must not be taken now, if it must not (write-verdict.ts's writeVerdict):
 * another member is primary, a sender knows a newer epoch of this shard (learned by the next exchange,
 * never guessed), a switchover is under way or ended without word of its outcome, a restarted primary
 * has not heard its epochs from a majority, or this primary is fenced (no majority heard for half a node
 * timeout, or a newer grant).
 */
function writeRefusal(ctx: PrimaryContext, req: DataRequest): Error | undefined {
  const now = performance.now();
  const verdict = writeVerdict(ctx.member.state, { now, sentEpoch: req.forwarded?.epoch, fence: ctx.view.quorum.writeFence(now) });
  if (verdict.ok) return undefined;
  if (verdict.code === 'not_primary') return notPrimary(ctx, req);
  const reason = verdict.code === 'epoch_behind' ? `${req.forwarded!.by}: ${verdict.reason}` : verdict.reason;
  return new WritesPausedError(verdict.code, ctx.shard.name, reason);
}

function refuseMisrouted(ctx: RoleContext, req: DataRequest, role: RoleName, owner: ShardConfig): never {
  const sender = req.forwarded!;
  throw new WrongShardError(
    `${req.forwarded!.by} (layout ${sender.layoutId}) forwarded slot ${req.slot} to ${ctx.shard.name}/${role}, ` +
      `but this node's config (${configName(ctx.config)}, layout ${ctx.config.layoutId}) assigns it to ${owner.name}; ` +
      'the two nodes run different configs',
    {
      slot: req.slot,
      this_node: { shard: ctx.shard.name, role, layout_id: ctx.config.layoutId, owner: owner.name },
      sender: { node: sender.by, layout_id: sender.layoutId },
    },
  );
}

/**
 * Response headers of this node's own answers, built once per role. Not frozen: V8 copies a frozen
 * array on its slow path, more than ten times slower than a plain one, and sendReply() copies
 * this list on every reply.
 */
function replyHeaders(ctx: RoleContext, role: RoleName, contentType: string): readonly string[] {
  return ['x-kv-shard', ctx.shard.name, 'x-kv-role', role, 'content-type', contentType];
}

function json(headers: readonly string[], body: unknown): DataReply {
  return { status: 200, headers, body: JSON.stringify(body) };
}

function notFound(ctx: RoleContext, req: DataRequest): NotFoundError {
  return new NotFoundError(`key ${JSON.stringify(req.keyText)} not found`, { key: req.keyText, shard: ctx.shard.name });
}

function readLocal(ctx: RoleContext, headers: readonly string[], req: DataRequest): DataReply {
  const value = ctx.store.get(req.slot, req.key);
  if (value === undefined) throw notFound(ctx, req);
  return { status: 200, headers, body: value };
}

/** Whether a key missing here may still be on its previous owner (its slot is migrating in, no delete seen). */
function mayBeOnPreviousOwner(ctx: RoleContext, req: DataRequest): boolean {
  return ctx.view.migration?.incomingPending(req.slot) === true && !ctx.store.migrations.hasTombstone(req.slot, req.key);
}

/** Reads the key from the primary that owned its slot before the migration. */
function readFromPreviousOwner(ctx: RoleContext, req: DataRequest): Promise<DataReply> {
  const previous = ctx.view.currentOf(ctx.view.migration!.previousOwner(req.slot));
  return ctx.forwarder.readFromPreviousOwner({ shard: previous.name, address: previous.address }, req);
}

/**
 * A read at the new owner of a slot still migrating in, for a key not here yet: the previous owner
 * answers; when it no longer has the key, the key may have arrived here meanwhile, so look again.
 */
async function readDuringMigration(ctx: RoleContext, headers: readonly string[], req: DataRequest): Promise<DataReply> {
  const reply = await readFromPreviousOwner(ctx, req);
  if (reply.status !== 404) return reply;
  return readLocal(ctx, headers, req);
}

function readPrimary(ctx: RoleContext, headers: readonly string[], req: DataRequest): DataReply | Promise<DataReply> {
  const value = ctx.store.get(req.slot, req.key);
  if (value !== undefined) return { status: 200, headers, body: value };
  if (mayBeOnPreviousOwner(ctx, req)) return readDuringMigration(ctx, headers, req);
  throw notFound(ctx, req);
}

/** `ack=primary` (the default) answers after the primary's durable commit; `ack=replica` also waits for the replica. */
function ackMode(req: DataRequest): 'primary' | 'replica' {
  const ack = req.extra.get('ack') ?? 'primary';
  if (ack !== 'primary' && ack !== 'replica')
    throw new BadRequestError(`parameter ack must be primary or replica, got ${JSON.stringify(ack.slice(0, parameterNameCharsMax))}`);
  return ack;
}

async function writeLocal(ctx: PrimaryContext, jsonHeaders: readonly string[], req: DataRequest): Promise<DataReply> {
  const ack = ackMode(req);
  // A delete while the key's slot migrates in leaves a tombstone, so the key's old value, possibly still
  // on its way from the previous owner, is not stored after it. Whether the key existed may then only
  // be known to the previous owner.
  const tombstone = req.op === 'delete' && mayBeOnPreviousOwner(ctx, req);
  const mutation: Mutation =
    req.op === 'set' ? { type: 'set', slot: req.slot, key: req.key, value: req.value! } : { type: 'delete', slot: req.slot, key: req.key, tombstone };
  const epoch = ctx.member.state.epoch;
  let {
    applied: [applied],
    seq,
  } = await ctx.store.commit([mutation], epoch);
  ctx.sender.notify();
  if (tombstone && !applied) applied = (await readFromPreviousOwner(ctx, req)).status === 200;
  if (ack === 'replica') await ctx.sender.waitForReplica(seq, replicaAckTimeoutMs);
  const lost = standingLost(ctx, epoch);
  if (lost !== undefined) throw new WriteOutcomeUnknownError(ctx.shard.name, seq, lost);
  const base = { key: req.keyText, shard: ctx.shard.name, slot: req.slot, seq, epoch, ack };
  return req.op === 'set' ? json(jsonHeaders, { ...base, bytes: req.value!.length }) : json(jsonHeaders, { ...base, deleted: applied });
}

/**
 * Why a write admitted at `epoch` must not be acknowledged once committed, if it must not
 * (write-verdict.ts's ackVerdict): the commit, or the wait for the replica, outlasted this member's
 * standing as primary.
 */
function standingLost(ctx: PrimaryContext, epoch: number): string | undefined {
  const now = performance.now();
  return ackVerdict(ctx.member.state, epoch, ctx.view.quorum.writeFence(now), now);
}

/**
 * A primary that does not serve its keys yet (see primary-recovery.ts): writes wait (503); reads are
 * answered from its own data when it has data of its own, else by its replica, which holds the shard's.
 */
function whileRecovering(
  ctx: RoleContext,
  headers: readonly string[],
  req: DataRequest,
  recovering: NonNullable<ReturnType<PrimaryRecovery['blocking']>>,
): DataReply | Promise<DataReply> {
  const refusal = new PrimaryRecoveringError(ctx.shard.name, recovering.state);
  if (req.op !== 'get') throw refusal;
  if (recovering.readsLocal) return readPrimary(ctx, headers, req);
  return ctx.forwarder.forward({ shard: ctx.shard.name, address: otherMember(ctx.shard, ctx.address) }, req).catch(() => {
    throw refusal;
  });
}

/** A request for a key of the primary's own shard. */
function ownKey(ctx: PrimaryContext, valueHeaders: readonly string[], jsonHeaders: readonly string[], req: DataRequest): DataReply | Promise<DataReply> {
  // A primary that does not know its standing (epochs unconfirmed, a switchover's outcome unknown) says
  // so before anything else: its recovery may wait on the very member it waits to hear from.
  const { confirmed, unsettled } = ctx.member.state;
  if (req.op !== 'get' && (!confirmed || unsettled)) throw writeRefusal(ctx, req)!;
  const recovering = ctx.recovery.blocking();
  if (recovering !== undefined) return whileRecovering(ctx, valueHeaders, req, recovering);
  // A primary just added serves its keys once it knows whether they are still on other shards.
  if (!ctx.view.decided) throw new LayoutPendingError(ctx.shard.name);
  if (req.op === 'get') return readPrimary(ctx, valueHeaders, req);
  const refusal = writeRefusal(ctx, req);
  if (refusal) throw refusal;
  return writeLocal(ctx, jsonHeaders, req);
}

export function primaryRole(ctx: PrimaryContext): Role {
  const valueHeaders = replyHeaders(ctx, 'primary', 'application/octet-stream');
  const jsonHeaders = replyHeaders(ctx, 'primary', 'application/json');
  return {
    name: 'primary',
    handle(req) {
      // The new owner of a migrating key reads it here: answer from this node's data, whatever the config
      // says (also when stale, since a stale node's data is what the new owner is waiting for), once that
      // data is settled (see primary-recovery.ts).
      if (req.previousOwnerRead && req.op === 'get') {
        const recovering = ctx.recovery.blocking();
        if (recovering !== undefined && !recovering.readsLocal) throw new PrimaryRecoveringError(ctx.shard.name, recovering.state);
        return readLocal(ctx, valueHeaders, req);
      }
      refuseIfStale(ctx, 'primary');
      const owner = ownerOf(ctx, req.slot);
      if (owner.idx !== ctx.shard.idx) {
        if (req.forwarded) refuseMisrouted(ctx, req, 'primary', owner);
        if (req.clientMap !== undefined) throw moved(ctx, req, owner);
        // A read goes to the owner's replica when its primary cannot answer (it may trail the latest write).
        if (req.op === 'get') return ctx.forwarder.read({ shard: owner.name, address: owner.address }, { shard: owner.name, address: owner.replica }, req);
        return ctx.forwarder.forward({ shard: owner.name, address: owner.address, epoch: ctx.view.epochOf(owner.name).epoch }, req);
      }
      return ownKey(ctx, valueHeaders, jsonHeaders, req);
    },
  };
}

/** A replica's read of a key of its own shard. */
function replicaOwnRead(ctx: RoleContext, headers: readonly string[], req: DataRequest, owner: ShardConfig): DataReply | Promise<DataReply> {
  if (ctx.store.dataset.replicaComplete()) {
    const value = ctx.store.get(req.slot, req.key);
    if (value !== undefined) return { status: 200, headers, body: value };
    // While keys may still be moving to its primary (or before the primary has said), a miss here is
    // not final: the primary answers, falling back to the key's previous owner.
    if (ctx.view.primaryMigrating === false) throw notFound(ctx, req);
  }
  // Before its first full resync ends, this replica's data is incomplete: its primary answers. A read
  // another node forwarded here is not forwarded again; that node asks the primary itself.
  if (req.forwarded) throw new ShardUnavailableError(ctx.shard.name, ctx.address, 'the replica cannot answer this read without its primary');
  if (req.clientMap !== undefined) throw moved(ctx, req, owner);
  return ctx.forwarder.forward({ shard: owner.name, address: owner.address }, req);
}

export function replicaRole(ctx: RoleContext): Role {
  const valueHeaders = replyHeaders(ctx, 'replica', 'application/octet-stream');
  return {
    name: 'replica',
    handle(req) {
      if (req.op !== 'get') throw req.clientMap !== undefined && !req.forwarded ? moved(ctx, req, ownerOf(ctx, req.slot)) : notPrimary(ctx, req);
      refuseIfStale(ctx, 'replica');
      const owner = ownerOf(ctx, req.slot);
      if (owner.idx === ctx.shard.idx) return replicaOwnRead(ctx, valueHeaders, req, owner);
      if (req.forwarded) refuseMisrouted(ctx, req, 'replica', owner);
      if (req.clientMap !== undefined) throw moved(ctx, req, owner);
      // Reads stay on replicas where possible, so a read-heavy load does not fall on the primaries;
      // the owner's primary answers when its replica is unreachable.
      return ctx.forwarder.read({ shard: owner.name, address: owner.replica }, { shard: owner.name, address: owner.address }, req);
    },
  };
}

/**
 * A shard removed from the config, running until its keys have moved to their new owners. It answers
 * only the new owners' reads of keys still here; everything else goes to the nodes in the config.
 */
export function drainRole(ctx: RoleContext): Role {
  const valueHeaders = replyHeaders(ctx, 'drain', 'application/octet-stream');
  return {
    name: 'drain',
    handle(req) {
      if (req.previousOwnerRead && req.op === 'get') return readLocal(ctx, valueHeaders, req);
      throw new WrongShardError(
        `${ctx.shard.name} is no longer in ${configName(ctx.config)} (layout ${ctx.config.layoutId}); it is moving its keys to the shards ` +
          'that own them now: send requests to those nodes',
        { this_node: { shard: ctx.shard.name, role: 'drain', layout_id: ctx.config.layoutId }, retriable: true },
      );
    },
  };
}
