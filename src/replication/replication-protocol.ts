// The messages a primary sends its replica, as msgpack bodies, with strict validation on receipt.
// Every message and every reply carries its sender's epoch for the shard, with the primary it names
// (raft's rule: every message carries the term): a receiver refuses a lower epoch than it knows, and a
// higher one is learned as named, never guessed. Pure: no I/O.

import { pack, unpack } from 'msgpackr';
import { BadRequestError } from '../core/errors.js';
import { keyBytesMax, slotCount, valueBytesMax } from '../core/limits.js';
import type { LogEntry } from '../storage/replication-log.js';
import type { ForkPoint } from '../storage/dataset-store.js';
import type { EpochKind, ShardEpoch } from '../cluster/epochs.js';

export const replicatePath = '/internal/replicate';
export const resyncPath = '/internal/resync';
export const digestPath = '/internal/digest';
/** A primary asks its replica what it holds before the primary serves (see primary-recovery.ts). */
export const replicaStatePath = '/internal/replica-state';
/** A primary copies its replica's data in chunks: a resync in the other direction. */
export const snapshotPath = '/internal/snapshot';

/** A batch of log entries, or an empty heartbeat. */
export interface ReplicateMessage {
  /** The sender's address: a replica takes batches only from the primary its config names. */
  readonly primary: string;
  readonly datasetId: string;
  /** Where the dataset branched off the one before it, while the replica has not followed it yet. */
  readonly forkedFrom: ForkPoint | null;
  /** The primary's newest sequence when it sent this, for the replica's lag. */
  readonly primarySeq: number;
  /** The primary's clock when it sent this (ms since the epoch). */
  readonly sentAt: number;
  /** The layout the primary runs: a replica on another one refuses reads rather than answer stale. */
  readonly layoutId: string;
  /** Whether keys may still be moving to the primary (a migration): the replica then sends misses to it. */
  readonly migrating: boolean;
  /** The sender's epoch for its shard (see cluster/epochs.ts): a replica refuses a lower one than it knows. */
  readonly epoch: ShardEpoch;
  readonly entries: readonly LogEntry[];
}

/**
 * A higher epoch for the sender's own shard that a peer named in a reply: the sender's node learns it
 * (as named: its primary, kind and time), since a member that hears of a newer epoch has been deposed.
 */
export type OnEpochSeen = (shard: string, seen: ShardEpoch, from: string) => void;

export type ResyncMessage = ResyncStep & {
  /** The sender's epoch for its shard, in every phase: a replica refuses a lower one than it knows. */
  readonly epoch: ShardEpoch;
};

export type ResyncStep =
  | {
      readonly phase: 'begin';
      readonly resyncId: string;
      /** The sender's address, checked like a batch's. */
      readonly primary: string;
      /** What the resync replaces the replica's data with: a replica refuses a shorter history (see the receiver). */
      readonly datasetId: string;
      readonly forkedFrom: ForkPoint | null;
      readonly snapshotSeq: number;
      readonly keyCount: number;
      /** The primary was started to overwrite its replica: the replica accepts even a shorter history. */
      readonly force: boolean;
    }
  | { readonly phase: 'chunk'; readonly resyncId: string; readonly pairs: readonly [Buffer, Buffer][] }
  | {
      readonly phase: 'end';
      readonly resyncId: string;
      readonly datasetId: string;
      readonly snapshotSeq: number;
      readonly keyCount: number;
    };

/** The replica's answer to both: where it stands, and on refusal why. */
export interface ReplicaReply {
  readonly appliedSeq: number;
  readonly error?: 'gap' | 'resync_needed' | 'resync_aborted' | 'resync_refused' | 'not_my_primary' | 'stale_epoch';
  /** For resync_refused, not_my_primary and stale_epoch: why, for the primary's log and /status. */
  readonly reason?: string;
  /** The replica's epoch for the shard, naming its primary (a stale_epoch refusal names the newer one). */
  readonly epoch?: ShardEpoch;
}

/**
 * GET /internal/replica-state?primary=ADDRESS: what a replica holds, for a primary deciding how to start.
 * The replica answers only the primary its own config names.
 */
export interface ReplicaStateReply {
  /** The primary dataset the replica follows, or null when it never completed a resync. */
  readonly datasetId: string | null;
  readonly appliedSeq: number;
  readonly keys: number;
  /** False while a resync is under way (its data is partial) or before the first one. */
  readonly complete: boolean;
  /**
   * The highest epoch at which the data the replica holds was written (see DatasetStore.datasetEpoch):
   * when its history and the primary's have forked, the higher epoch's branch wins. Undefined from a
   * replica that does not say (an older build).
   */
  readonly datasetEpoch?: number;
}

/** POST /internal/snapshot: a primary reads its replica's data in chunks, in one consistent snapshot. */
export type SnapshotStep =
  | { readonly phase: 'begin' }
  | { readonly phase: 'chunk'; readonly snapshotId: string; readonly after: Buffer | null }
  | { readonly phase: 'end'; readonly snapshotId: string };

/** A step, with the address of the primary asking (checked against the replica's own config) and its epoch. */
export type SnapshotRequest = SnapshotStep & { readonly primary: string; readonly epoch: ShardEpoch };

/** A snapshot step's answer, with the replica's epoch for the shard. */
export type SnapshotReply = SnapshotAnswer & { readonly epoch: ShardEpoch };

export type SnapshotAnswer =
  | {
      readonly phase: 'begin';
      readonly snapshotId: string;
      readonly datasetId: string | null;
      readonly seq: number;
      readonly keyCount: number;
      readonly complete: boolean;
    }
  | { readonly phase: 'chunk'; readonly pairs: readonly [Buffer, Buffer][] }
  | { readonly phase: 'end' };

export function encodeMessage(message: ReplicateMessage | ResyncMessage | SnapshotRequest | SnapshotReply): Buffer {
  return pack(message);
}

function decodeBody(body: Buffer): Record<string, unknown> {
  let decoded: unknown;
  try {
    decoded = unpack(body);
  } catch {
    throw new BadRequestError('replication message is not valid msgpack');
  }
  if (typeof decoded !== 'object' || decoded === null) throw new BadRequestError('replication message is not a map');
  return decoded as Record<string, unknown>;
}

const isSeq = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
const isBytes = (v: unknown): v is Uint8Array => v instanceof Uint8Array;
const isId = (v: unknown): v is string => typeof v === 'string' && v.length > 0 && v.length <= 64;
/** `host:port` as a config writes it; the receiver compares it with its own config. */
const isAddress = (v: unknown): v is string => typeof v === 'string' && v.length > 0 && v.length <= 300;

const epochKinds: readonly EpochKind[] = ['initial', 'switchover', 'forced', 'lease_expired'];

/** An epoch as a message names it: checked for shape here; whether its primary is a member, by the receiver. */
export function decodeShardEpoch(v: unknown, what = 'epoch'): ShardEpoch {
  const e = v as Record<string, unknown> | null;
  if (typeof e !== 'object' || e === null) invalid(what);
  const { epoch, primary, kind, at } = e;
  if (!Number.isSafeInteger(epoch) || (epoch as number) < 1 || !isAddress(primary)) invalid(what);
  if (!epochKinds.includes(kind as EpochKind) || (at !== null && (typeof at !== 'string' || at.length > 40))) invalid(what);
  return { epoch: epoch as number, primary, kind: kind as EpochKind, at: at as string | null };
}

function forkPoint(v: unknown, what: string): ForkPoint | null {
  if (v === null) return null;
  const f = v as Record<string, unknown>;
  if (typeof f !== 'object' || !isId(f['datasetId']) || !isSeq(f['seq'])) invalid(what);
  return { datasetId: f['datasetId'], seq: f['seq'] };
}

function invalid(what: string): never {
  throw new BadRequestError(`invalid replication message: ${what}`);
}

/** Decodes and validates a batch; its entries must be contiguous and well-formed. */
export function decodeReplicate(body: Buffer): ReplicateMessage {
  const m = decodeBody(body);
  if (!isAddress(m['primary'])) invalid('primary');
  if (!isId(m['datasetId'])) invalid('datasetId');
  if (!isSeq(m['primarySeq'])) invalid('primarySeq');
  if (!isSeq(m['sentAt'])) invalid('sentAt');
  if (!isId(m['layoutId'])) invalid('layoutId');
  if (typeof m['migrating'] !== 'boolean') invalid('migrating');
  const epoch = decodeShardEpoch(m['epoch']);
  if (!Array.isArray(m['entries'])) invalid('entries');
  const entries = (m['entries'] as unknown[]).map((raw, i): LogEntry => {
    const e = raw as Record<string, unknown>;
    if (typeof e !== 'object' || e === null) invalid(`entries[${i}]`);
    const { seq, type, slot, key, value, ts } = e;
    if (!isSeq(seq) || !isSeq(ts)) invalid(`entries[${i}].seq/ts`);
    if (!Number.isInteger(slot) || (slot as number) < 0 || (slot as number) >= slotCount) invalid(`entries[${i}].slot`);
    if (!isBytes(key) || key.length === 0 || key.length > keyBytesMax) invalid(`entries[${i}].key`);
    if (type === 'set') {
      if (!isBytes(value) || value.length > valueBytesMax) invalid(`entries[${i}].value`);
      return { seq, type, slot: slot as number, key: Buffer.from(key), value: Buffer.from(value), ts };
    }
    if (type !== 'delete') invalid(`entries[${i}].type`);
    return { seq, type, slot: slot as number, key: Buffer.from(key), ts };
  });
  entries.forEach((e, i) => {
    if (i > 0 && e.seq !== entries[i - 1]!.seq + 1) invalid(`entries are not contiguous at index ${i}`);
  });
  return {
    primary: m['primary'] as string,
    datasetId: m['datasetId'] as string,
    forkedFrom: forkPoint(m['forkedFrom'] ?? null, 'forkedFrom'),
    primarySeq: m['primarySeq'] as number,
    sentAt: m['sentAt'] as number,
    layoutId: m['layoutId'] as string,
    migrating: m['migrating'] as boolean,
    epoch,
    entries,
  };
}

export function decodeResync(body: Buffer): ResyncMessage {
  const m = decodeBody(body);
  return { ...decodeResyncStep(m), epoch: decodeShardEpoch(m['epoch']) };
}

function decodeResyncStep(m: Record<string, unknown>): ResyncStep {
  const resyncId = m['resyncId'];
  if (!isId(resyncId)) invalid('resyncId');
  switch (m['phase']) {
    case 'begin': {
      const { primary, datasetId, snapshotSeq, keyCount, force } = m;
      if (!isAddress(primary) || !isId(datasetId) || !isSeq(snapshotSeq) || !isSeq(keyCount) || typeof force !== 'boolean') invalid('begin fields');
      return { phase: 'begin', resyncId, primary, datasetId, forkedFrom: forkPoint(m['forkedFrom'] ?? null, 'forkedFrom'), snapshotSeq, keyCount, force };
    }
    case 'chunk':
      return { phase: 'chunk', resyncId, pairs: decodePairs(m['pairs']) };
    case 'end': {
      const { datasetId, snapshotSeq, keyCount } = m;
      if (!isId(datasetId) || !isSeq(snapshotSeq) || !isSeq(keyCount)) invalid('end fields');
      return { phase: 'end', resyncId, datasetId, snapshotSeq, keyCount };
    }
    default:
      invalid('phase');
  }
}

/** Slot-prefixed storage keys with values, as resyncs and snapshots carry them. */
function decodePairs(pairs: unknown): [Buffer, Buffer][] {
  if (!Array.isArray(pairs)) invalid('pairs');
  return pairs.map((p: unknown, i): [Buffer, Buffer] => {
    if (!Array.isArray(p) || p.length !== 2 || !isBytes(p[0]) || !isBytes(p[1])) invalid(`pairs[${i}]`);
    if (p[0].length < 3 || p[0].length > keyBytesMax + 2 || p[1].length > valueBytesMax) invalid(`pairs[${i}] size`);
    return [Buffer.from(p[0]), Buffer.from(p[1])];
  });
}

export function decodeSnapshotRequest(body: Buffer): SnapshotRequest {
  const m = decodeBody(body);
  const primary = m['primary'];
  if (!isAddress(primary)) invalid('primary');
  const epoch = decodeShardEpoch(m['epoch']);
  switch (m['phase']) {
    case 'begin':
      return { primary, epoch, phase: 'begin' };
    case 'chunk': {
      const { snapshotId, after } = m;
      if (!isId(snapshotId) || (after !== null && (!isBytes(after) || after.length > keyBytesMax + 2))) invalid('chunk fields');
      return { primary, epoch, phase: 'chunk', snapshotId, after: after === null ? null : Buffer.from(after) };
    }
    case 'end':
      if (!isId(m['snapshotId'])) invalid('snapshotId');
      return { primary, epoch, phase: 'end', snapshotId: m['snapshotId'] };
    default:
      invalid('phase');
  }
}

/** Decodes the replica's answer to a snapshot request of `phase`; throws on anything else. */
export function decodeSnapshotReply(body: Buffer, phase: SnapshotStep['phase']): SnapshotReply {
  const m = decodeBody(body);
  if (m['phase'] !== phase) invalid('reply phase');
  return { ...decodeSnapshotAnswer(m, phase), epoch: decodeShardEpoch(m['epoch']) };
}

function decodeSnapshotAnswer(m: Record<string, unknown>, phase: SnapshotStep['phase']): SnapshotAnswer {
  switch (phase) {
    case 'begin': {
      const { snapshotId, datasetId, seq, keyCount, complete } = m;
      if (!isId(snapshotId) || (datasetId !== null && !isId(datasetId)) || !isSeq(seq) || !isSeq(keyCount) || typeof complete !== 'boolean')
        invalid('begin reply');
      return { phase, snapshotId, datasetId, seq, keyCount, complete };
    }
    case 'chunk':
      return { phase, pairs: decodePairs(m['pairs']) };
    case 'end':
      return { phase };
  }
}

/** Validates the replica's state answer (JSON). */
export function decodeReplicaState(raw: unknown): ReplicaStateReply {
  const r = raw as Record<string, unknown> | null;
  if (typeof r !== 'object' || r === null) invalid('replica state');
  const { datasetId, appliedSeq, keys, complete, datasetEpoch } = r;
  if ((datasetId !== null && !isId(datasetId)) || !isSeq(appliedSeq) || !isSeq(keys) || typeof complete !== 'boolean') invalid('replica state fields');
  if (datasetEpoch !== undefined && (!Number.isSafeInteger(datasetEpoch) || (datasetEpoch as number) < 1)) invalid('replica state datasetEpoch');
  return { datasetId, appliedSeq, keys, complete, ...(datasetEpoch === undefined ? {} : { datasetEpoch: datasetEpoch as number }) };
}

/**
 * The replica's JSON reply, or undefined when the body is not one (another server on that port, say).
 * An epoch of the wrong shape is left out rather than taken.
 */
export function parseReplicaReply(body: Buffer): ReplicaReply | undefined {
  try {
    const reply = JSON.parse(body.toString('utf8')) as ReplicaReply;
    if (typeof reply?.appliedSeq !== 'number') return undefined;
    const { epoch, ...rest } = reply;
    return epoch === undefined ? rest : { ...rest, epoch: decodeShardEpoch(epoch) };
  } catch {
    return undefined;
  }
}
