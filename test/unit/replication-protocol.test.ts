// Replication messages round-trip through msgpack, and malformed ones (bad types, oversized keys,
// non-contiguous sequences, unknown phases) are refused with a 400 before anything is applied.
import { pack } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { BadRequestError } from '../../src/core/errors.js';
import { decodeReplicate, decodeResync, encodeMessage } from '../../src/replication/replication-protocol.js';

const epoch = { epoch: 1, primary: 'p:1', kind: 'initial' as const, at: null };
const entry = (seq: number) => ({ seq, type: 'set' as const, slot: 7, key: Buffer.from(`k${seq}`), value: Buffer.from([0, seq % 256, 255]), ts: 1000 + seq });

describe('replication batches', () => {
  it('round-trips a batch with binary values', () => {
    const message = {
      primary: '127.0.0.1:1',
      datasetId: 'ds-1',
      forkedFrom: { datasetId: 'ds-0', seq: 9 },
      primarySeq: 12,
      sentAt: 5,
      layoutId: 't1',
      migrating: false,
      epoch,
      entries: [entry(10), entry(11), { seq: 12, type: 'delete' as const, slot: 7, key: Buffer.from('gone'), ts: 1 }],
    };
    const decoded = decodeReplicate(encodeMessage(message));
    expect(decoded.entries.map((e) => e.seq)).toEqual([10, 11, 12]);
    expect(decoded.entries[1]!.value!.equals(Buffer.from([0, 11, 255]))).toBe(true);
    expect(decoded.entries[2]!.type).toBe('delete');
  });

  it.each([
    ['not msgpack', Buffer.from('hello world')],
    ['no sender', pack({ datasetId: 'd', primarySeq: 1, sentAt: 0, layoutId: 't1', migrating: false, epoch, entries: [] })],
    [
      'non-contiguous',
      pack({ primary: 'p:1', datasetId: 'd', primarySeq: 3, sentAt: 0, layoutId: 't1', migrating: false, epoch, entries: [entry(1), entry(3)] }),
    ],
    [
      'empty key',
      pack({
        primary: 'p:1',
        datasetId: 'd',
        primarySeq: 1,
        sentAt: 0,
        layoutId: 't1',
        migrating: false,
        epoch,
        entries: [{ ...entry(1), key: Buffer.alloc(0) }],
      }),
    ],
    [
      'oversized key',
      pack({
        primary: 'p:1',
        datasetId: 'd',
        primarySeq: 1,
        sentAt: 0,
        layoutId: 't1',
        migrating: false,
        epoch,
        entries: [{ ...entry(1), key: Buffer.alloc(1025) }],
      }),
    ],
    [
      'bad slot',
      pack({ primary: 'p:1', datasetId: 'd', primarySeq: 1, sentAt: 0, layoutId: 't1', migrating: false, epoch, entries: [{ ...entry(1), slot: 16384 }] }),
    ],
    [
      'bad type',
      pack({ primary: 'p:1', datasetId: 'd', primarySeq: 1, sentAt: 0, layoutId: 't1', migrating: false, epoch, entries: [{ ...entry(1), type: 'put' }] }),
    ],
    ['missing dataset', pack({ primary: 'p:1', primarySeq: 1, sentAt: 0, layoutId: 't1', migrating: false, epoch, entries: [] })],
    [
      'an epoch without its primary',
      pack({ primary: 'p:1', datasetId: 'd', primarySeq: 1, sentAt: 0, layoutId: 't1', migrating: false, epoch: 1, entries: [] }),
    ],
    ['negative seq', pack({ primary: 'p:1', datasetId: 'd', primarySeq: -1, sentAt: 0, layoutId: 't1', migrating: false, epoch, entries: [] })],
  ])('refuses a batch: %s', (_name, body) => {
    expect(() => decodeReplicate(body)).toThrow(BadRequestError);
  });
});

describe('resync messages', () => {
  it('decodes resync phases and refuses unknown ones', () => {
    const begin = {
      phase: 'begin' as const,
      resyncId: 'r1',
      primary: 'p:1',
      datasetId: 'd',
      forkedFrom: null,
      snapshotSeq: 5,
      keyCount: 2,
      force: false,
      epoch,
    };
    expect(decodeResync(encodeMessage(begin))).toEqual(begin);
    expect(() => decodeResync(pack({ phase: 'begin', resyncId: 'r1', epoch }))).toThrow(BadRequestError);
    const chunk = decodeResync(encodeMessage({ phase: 'chunk', resyncId: 'r1', pairs: [[Buffer.from([0, 1, 97]), Buffer.from([9])]], epoch }));
    expect(chunk.phase === 'chunk' && chunk.pairs[0]![1].equals(Buffer.from([9]))).toBe(true);
    expect(() => decodeResync(pack({ phase: 'drop', resyncId: 'r1', epoch }))).toThrow(BadRequestError);
    expect(() => decodeResync(encodeMessage({ phase: 'chunk', resyncId: 'r1', pairs: [], epoch: { ...epoch, epoch: 0 } }))).toThrow(BadRequestError);
    expect(() => decodeResync(pack({ phase: 'chunk', resyncId: 'r1', pairs: [[Buffer.from([0]), Buffer.from([1])]] }))).toThrow(BadRequestError);
  });
});
