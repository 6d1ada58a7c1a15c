// The messages a primary sends its replica, as msgpack bodies, with strict validation on receipt.
// Pure: no I/O.

import { pack, unpack } from 'msgpackr';
import { BadRequestError } from './errors.js';
import { keyBytesMax, slotCount, valueBytesMax } from './limits.js';
import type { LogEntry } from './replication-log.js';

/** Header carrying the cluster secret on every internal request. */
export const tokenHeader = 'x-kv-token';

export const replicatePath = '/internal/replicate';
export const resyncPath = '/internal/resync';
export const digestPath = '/internal/digest';

/** A batch of log entries, or an empty heartbeat. */
export interface ReplicateMessage {
  readonly datasetId: string;
  /** The primary's newest sequence when it sent this, for the replica's lag. */
  readonly primarySeq: number;
  /** The primary's clock when it sent this (ms since the epoch). */
  readonly sentAt: number;
  /** The layout the primary runs: a replica on another one refuses reads rather than answer stale. */
  readonly topologyId: string;
  /** Whether keys may still be moving to the primary (a migration): the replica then sends misses to it. */
  readonly migrating: boolean;
  readonly entries: readonly LogEntry[];
}

export type ResyncMessage =
  | { readonly phase: 'begin'; readonly resyncId: string }
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
  readonly error?: 'gap' | 'resync_needed' | 'resync_aborted';
}

export function encodeMessage(message: ReplicateMessage | ResyncMessage): Buffer {
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

function invalid(what: string): never {
  throw new BadRequestError(`invalid replication message: ${what}`);
}

/** Decodes and validates a batch; its entries must be contiguous and well-formed. */
export function decodeReplicate(body: Buffer): ReplicateMessage {
  const m = decodeBody(body);
  if (!isId(m['datasetId'])) invalid('datasetId');
  if (!isSeq(m['primarySeq'])) invalid('primarySeq');
  if (!isSeq(m['sentAt'])) invalid('sentAt');
  if (!isId(m['topologyId'])) invalid('topologyId');
  if (typeof m['migrating'] !== 'boolean') invalid('migrating');
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
    datasetId: m['datasetId'] as string,
    primarySeq: m['primarySeq'] as number,
    sentAt: m['sentAt'] as number,
    topologyId: m['topologyId'] as string,
    migrating: m['migrating'] as boolean,
    entries,
  };
}

export function decodeResync(body: Buffer): ResyncMessage {
  const m = decodeBody(body);
  const resyncId = m['resyncId'];
  if (!isId(resyncId)) invalid('resyncId');
  switch (m['phase']) {
    case 'begin':
      return { phase: 'begin', resyncId };
    case 'chunk': {
      const pairs = m['pairs'];
      if (!Array.isArray(pairs)) invalid('pairs');
      return {
        phase: 'chunk',
        resyncId,
        pairs: pairs.map((p: unknown, i): [Buffer, Buffer] => {
          if (!Array.isArray(p) || p.length !== 2 || !isBytes(p[0]) || !isBytes(p[1])) invalid(`pairs[${i}]`);
          if (p[0].length < 3 || p[0].length > keyBytesMax + 2 || p[1].length > valueBytesMax) invalid(`pairs[${i}] size`);
          return [Buffer.from(p[0]), Buffer.from(p[1])];
        }),
      };
    }
    case 'end': {
      const { datasetId, snapshotSeq, keyCount } = m;
      if (!isId(datasetId) || !isSeq(snapshotSeq) || !isSeq(keyCount)) invalid('end fields');
      return { phase: 'end', resyncId, datasetId, snapshotSeq, keyCount };
    }
    default:
      invalid('phase');
  }
}
