// What the replication sender does next (nextAction), what the replica's answer means (afterReply), what
// a failure means (afterFailure) and when applied entries are trimmed (trimApplied), as tables of
// situations. The log holds seqs 101 to 300 unless a case says otherwise.
import { describe, expect, it } from 'vitest';
import { afterFailure, afterReply, nextAction, trimApplied, type SenderFacts } from '../../src/replication/sender-next.js';

const facts = (over: Partial<SenderFacts>): SenderFacts => ({
  stopping: false,
  state: 'streaming',
  ackedSeq: 300,
  firstSeq: 101,
  lastSeq: 300,
  ackWaiters: 0,
  lingered: false,
  ...over,
});

describe('nextAction', () => {
  it.each([
    { name: 'closing', facts: facts({ stopping: true, ackedSeq: 100 }), action: { kind: 'stop' } },
    {
      name: 'just started: a heartbeat learns where the replica is',
      facts: facts({ state: 'connecting', ackedSeq: undefined }),
      action: { kind: 'send', fromSeq: 301, heartbeat: true },
    },
    { name: 'caught up: a heartbeat', facts: facts({}), action: { kind: 'send', fromSeq: 301, heartbeat: true } },
    { name: 'streaming, a few entries pending: linger for more', facts: facts({ ackedSeq: 290 }), action: { kind: 'linger', ms: 5 } },
    {
      name: 'streaming, a few entries pending, lingered already: send',
      facts: facts({ ackedSeq: 290, lingered: true }),
      action: { kind: 'send', fromSeq: 291, heartbeat: false },
    },
    {
      name: 'a few entries pending and a client waits for ack=replica: send at once',
      facts: facts({ ackedSeq: 290, ackWaiters: 1 }),
      action: { kind: 'send', fromSeq: 291, heartbeat: false },
    },
    { name: 'many entries pending: send at once', facts: facts({ ackedSeq: 101, lastSeq: 1000 }), action: { kind: 'send', fromSeq: 102, heartbeat: false } },
    {
      name: 'after a failure, a few entries pending: no linger',
      facts: facts({ state: 'unreachable', ackedSeq: 290 }),
      action: { kind: 'send', fromSeq: 291, heartbeat: false },
    },
    { name: 'replica at the log start', facts: facts({ ackedSeq: 100, lastSeq: 1000 }), action: { kind: 'send', fromSeq: 101, heartbeat: false } },
    { name: 'replica behind the retained log', facts: facts({ ackedSeq: 99, lastSeq: 1000 }), action: { kind: 'resync' } },
    { name: 'replica ahead of the log', facts: facts({ ackedSeq: 301 }), action: { kind: 'resync' } },
    { name: 'a few entries pending, and trimmed away while lingering', facts: facts({ ackedSeq: 99, lingered: true }), action: { kind: 'resync' } },
    { name: 'replica behind an empty log', facts: facts({ ackedSeq: 5, firstSeq: 301, lastSeq: 300 }), action: { kind: 'resync' } },
    {
      name: 'replica refused: try again from the log end',
      facts: facts({ state: 'refused', ackedSeq: undefined }),
      action: { kind: 'send', fromSeq: 301, heartbeat: true },
    },
  ])('$name', ({ facts, action }) => {
    expect(nextAction(facts)).toEqual(action);
  });
});

describe('afterReply', () => {
  it.each([
    { name: 'applied everything', reply: { appliedSeq: 300 }, outcome: { kind: 'streaming', caughtUp: true } },
    { name: 'applied part: more to send', reply: { appliedSeq: 250 }, outcome: { kind: 'streaming', caughtUp: false } },
    { name: 'a gap: resend from its position', reply: { appliedSeq: 200, error: 'gap' }, outcome: { kind: 'streaming', caughtUp: false } },
    { name: 'the replica needs a resync', reply: { appliedSeq: 0, error: 'resync_needed' }, outcome: { kind: 'resync', replicaAhead: false } },
    { name: 'the replica is ahead of this log', reply: { appliedSeq: 350 }, outcome: { kind: 'resync', replicaAhead: true } },
  ] as const)('$name', ({ reply, outcome }) => {
    expect(afterReply(reply, 300)).toEqual(outcome);
  });
});

describe('afterFailure', () => {
  it.each([
    { name: 'no answer', refusal: undefined, outcome: { kind: 'unreachable' } },
    {
      name: 'the replica refuses the resync',
      refusal: { appliedSeq: 9, error: 'resync_refused', reason: 'it holds more' },
      outcome: { kind: 'refused', reason: 'it holds more' },
    },
    {
      name: 'the replica follows another primary, no reason given',
      refusal: { appliedSeq: 9, error: 'not_my_primary' },
      outcome: { kind: 'refused', reason: 'not_my_primary' },
    },
    { name: 'the replica aborted a resync', refusal: { appliedSeq: 9, error: 'resync_aborted' }, outcome: { kind: 'retry' } },
  ] as const)('$name', ({ refusal, outcome }) => {
    expect(afterFailure(refusal)).toEqual(outcome);
  });
});

describe('trimApplied', () => {
  it.each([
    { name: 'caught up with applied entries', facts: facts({}), caughtUp: true, trim: true },
    { name: 'under load, fewer applied than a run', facts: facts({ ackedSeq: 200 }), caughtUp: false, trim: false },
    { name: 'under load, a run applied', facts: facts({ ackedSeq: 1100, lastSeq: 5000 }), caughtUp: false, trim: true },
    { name: 'caught up, nothing applied in the log', facts: facts({ ackedSeq: 100 }), caughtUp: true, trim: false },
    { name: 'position unknown', facts: facts({ ackedSeq: undefined }), caughtUp: true, trim: false },
    { name: 'resyncing', facts: facts({ state: 'resyncing' }), caughtUp: true, trim: false },
  ])('$name', ({ facts, caughtUp, trim }) => {
    expect(trimApplied(facts, caughtUp)).toBe(trim);
  });
});
