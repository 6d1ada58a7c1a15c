// A member's role as one pure decision (cluster/member-role.ts): each row is a state, an event and the
// state and effects that must follow. Start and restart with the epochs a data dir kept, a switchover's
// pause and its outcome, an announcement or a higher epoch seen, a promotion granted or refused, a data
// dir lost (a store without a complete copy), and the majority lost and regained.
import { describe, expect, it } from 'vitest';
import { type MemberEffect, type MemberEvent, type MemberState, start, type StartInput, step } from '../../src/cluster/member-role.js';
import { ackVerdict, type WriteInput, writeVerdict } from '../../src/cluster/write-verdict.js';

const a = '127.0.0.1:7001';
const b = '127.0.0.1:7002';

/** Member a, confirmed, at epoch 3. */
const primary: MemberState = { self: a, role: 'primary', epoch: 3, primary: a, confirmed: true, pauseUntil: 0, unsettled: false };
const replica: MemberState = { ...primary, role: 'replica', primary: b };

describe('start', () => {
  const base: StartInput = { self: a, epoch: 1, primary: a, servedAs: undefined, confirmed: true, pausedAtEpoch: undefined };
  const rows: { name: string; input: Partial<StartInput>; role: 'primary' | 'replica'; effects: MemberEffect[]; unsettled?: boolean }[] = [
    {
      name: 'a new member named by the initial epoch serves as primary',
      input: {},
      role: 'primary',
      effects: [{ type: 'serve', role: 'primary', epoch: 1, promote: false }],
    },
    {
      name: 'a restart whose epochs name the other member serves as replica, whatever the config says',
      input: { epoch: 4, primary: b, servedAs: 'primary' },
      role: 'replica',
      effects: [{ type: 'serve', role: 'replica', demote: true }],
    },
    {
      name: 'a restart whose epochs name it, with a store last demoted, promotes the store first',
      input: { epoch: 5, servedAs: 'replica' },
      role: 'primary',
      effects: [{ type: 'serve', role: 'primary', epoch: 5, promote: true }],
    },
    {
      name: 'a primary restarted mid-switchover asks for the outcome before it takes writes',
      input: { epoch: 2, servedAs: 'primary', pausedAtEpoch: 2 },
      role: 'primary',
      unsettled: true,
      effects: [
        { type: 'serve', role: 'primary', epoch: 2, promote: false },
        { type: 'askOutcome', epoch: 2 },
      ],
    },
    {
      name: 'a pause stored at an older epoch is cleared: the epoch since tells its outcome',
      input: { epoch: 3, primary: b, pausedAtEpoch: 2 },
      role: 'replica',
      effects: [{ type: 'serve', role: 'replica', demote: false }, { type: 'clearPause' }],
    },
  ];
  for (const row of rows) {
    it(row.name, () => {
      const { state, effects } = start({ ...base, ...row.input });
      expect(state.role).toBe(row.role);
      expect(state.unsettled).toBe(row.unsettled ?? false);
      expect(effects).toEqual(row.effects);
    });
  }

  it('starts unconfirmed when it has peers to hear from, and writes wait until a majority confirms', () => {
    const { state } = start({ ...base, confirmed: false });
    const input = { now: 0, sentEpoch: undefined, fence: undefined };
    expect(writeVerdict(state, input)).toMatchObject({ ok: false, code: 'epoch_unconfirmed' });
    const confirmed = step(state, { type: 'epochsConfirmed' });
    expect(confirmed.effects).toEqual([]);
    expect(writeVerdict(confirmed.state, input)).toEqual({ ok: true });
  });
});

/** State, event, and the state and effects that follow. */
const stepRows: { name: string; from: MemberState; event: MemberEvent; to: Partial<MemberState>; effects: MemberEffect[] }[] = [
  {
    name: 'a primary that sees a higher epoch naming the other member becomes its replica, after storing it',
    from: { ...primary, pauseUntil: 50, unsettled: true },
    event: { type: 'epochSeen', epoch: 4, primary: b, complete: true },
    to: { role: 'replica', epoch: 4, primary: b, pauseUntil: 0, unsettled: false },
    effects: [{ type: 'storeEpochs' }, { type: 'become', role: 'replica' }],
  },
  {
    name: 'a replica that sees an announcement naming it becomes primary at that epoch',
    from: replica,
    event: { type: 'epochSeen', epoch: 4, primary: a, complete: true },
    to: { role: 'primary', epoch: 4, primary: a },
    effects: [{ type: 'storeEpochs' }, { type: 'become', role: 'primary', epoch: 4, rebuildFirst: false }],
  },
  {
    name: 'a replica named primary whose data dir was lost rebuilds from the other member first',
    from: replica,
    event: { type: 'epochSeen', epoch: 4, primary: a, complete: false },
    to: { role: 'primary', epoch: 4, primary: a },
    effects: [{ type: 'storeEpochs' }, { type: 'become', role: 'primary', epoch: 4, rebuildFirst: true }],
  },
  {
    name: 'a primary that sees a higher epoch still naming it serves at that epoch',
    from: primary,
    event: { type: 'epochSeen', epoch: 5, primary: a, complete: true },
    to: { role: 'primary', epoch: 5 },
    effects: [{ type: 'storeEpochs' }, { type: 'raise', epoch: 5 }],
  },
  {
    name: 'a replica that sees a new epoch naming the other member only stores it',
    from: replica,
    event: { type: 'epochSeen', epoch: 6, primary: b, complete: true },
    to: { role: 'replica', epoch: 6 },
    effects: [{ type: 'storeEpochs' }],
  },
  {
    name: 'an epoch no higher than the one known changes nothing',
    from: primary,
    event: { type: 'epochSeen', epoch: 2, primary: b, complete: true },
    to: primary,
    effects: [],
  },
  {
    name: 'the same epoch and primary seen again changes nothing',
    from: primary,
    event: { type: 'epochSeen', epoch: 3, primary: a, complete: true },
    to: primary,
    effects: [],
  },
  {
    name: 'a promotion a majority granted makes a replica primary, adopted, stored, then carried out',
    from: replica,
    event: { type: 'promotionGranted', epoch: 4, kind: 'forced', complete: true },
    to: { role: 'primary', epoch: 4, primary: a },
    effects: [{ type: 'adoptEpoch', epoch: 4, kind: 'forced' }, { type: 'storeEpochs' }, { type: 'become', role: 'primary', epoch: 4, rebuildFirst: false }],
  },
  {
    name: 'a granted promotion of a member without a complete copy rebuilds first',
    from: replica,
    event: { type: 'promotionGranted', epoch: 4, kind: 'switchover', complete: false },
    to: { role: 'primary', epoch: 4, primary: a },
    effects: [{ type: 'adoptEpoch', epoch: 4, kind: 'switchover' }, { type: 'storeEpochs' }, { type: 'become', role: 'primary', epoch: 4, rebuildFirst: true }],
  },
  {
    name: 'a grant at an epoch already passed counts for nothing',
    from: replica,
    event: { type: 'promotionGranted', epoch: 3, kind: 'forced', complete: true },
    to: replica,
    effects: [],
  },
  { name: 'a refused promotion changes nothing', from: replica, event: { type: 'promotionRefused' }, to: replica, effects: [] },
  {
    name: 'a pause holds writes, is stored, and leaves the outcome to ask once it runs out',
    from: primary,
    event: { type: 'paused', epoch: 3, until: 100 },
    to: { pauseUntil: 100, unsettled: true },
    effects: [
      { type: 'recordPause', epoch: 3 },
      { type: 'askOutcome', epoch: 3 },
    ],
  },
  {
    name: 'a pause asked at another epoch than the primary is at is ignored',
    from: primary,
    event: { type: 'paused', epoch: 2, until: 100 },
    to: primary,
    effects: [],
  },
  { name: 'a replica does not pause', from: replica, event: { type: 'paused', epoch: 3, until: 100 }, to: replica, effects: [] },
  {
    name: 'a resume ends the pause',
    from: { ...primary, pauseUntil: 100, unsettled: true },
    event: { type: 'resumed' },
    to: { pauseUntil: 0, unsettled: false },
    effects: [{ type: 'clearPause' }],
  },
  {
    name: 'the member saying it was not promoted, after the pause ran out, lets writes go on',
    from: { ...primary, pauseUntil: 100, unsettled: true },
    event: { type: 'notPromoted', epoch: 3, now: 150 },
    to: { pauseUntil: 0, unsettled: false },
    effects: [{ type: 'clearPause' }],
  },
  {
    name: 'a "not promoted" answer inside a renewed pause settles nothing',
    from: { ...primary, pauseUntil: 200, unsettled: true },
    event: { type: 'notPromoted', epoch: 3, now: 150 },
    to: { pauseUntil: 200, unsettled: true },
    effects: [],
  },
  {
    name: 'a "not promoted" answer about an older epoch settles nothing',
    from: { ...primary, epoch: 4, pauseUntil: 100, unsettled: true },
    event: { type: 'notPromoted', epoch: 3, now: 150 },
    to: { unsettled: true },
    effects: [],
  },
];

describe('step', () => {
  for (const row of stepRows) {
    it(row.name, () => {
      const { state, effects } = step(row.from, row.event);
      expect(state).toEqual({ ...row.from, ...row.to });
      expect(effects).toEqual(row.effects);
    });
  }
});

describe('writeVerdict', () => {
  const open: WriteInput = { now: 10, sentEpoch: undefined, fence: undefined };
  const noMajority = { code: 'no_majority' as const, reason: 'no majority heard' };
  const rows: { name: string; state: MemberState; input: Partial<WriteInput>; code: string | undefined }[] = [
    { name: 'a confirmed primary takes writes', state: primary, input: {}, code: undefined },
    { name: 'a replica refuses', state: replica, input: {}, code: 'not_primary' },
    { name: 'a sender that knows a newer epoch holds the write', state: primary, input: { sentEpoch: 4 }, code: 'epoch_behind' },
    { name: 'a sender at the same epoch does not', state: primary, input: { sentEpoch: 3 }, code: undefined },
    { name: 'a pause holds writes until it runs out', state: { ...primary, pauseUntil: 20, unsettled: true }, input: {}, code: 'failover_in_progress' },
    { name: 'then the unknown outcome does', state: { ...primary, pauseUntil: 5, unsettled: true }, input: {}, code: 'failover_unsettled' },
    { name: 'an unconfirmed primary refuses', state: { ...primary, confirmed: false }, input: {}, code: 'epoch_unconfirmed' },
    { name: 'the majority lost fences writes', state: primary, input: { fence: noMajority }, code: 'no_majority' },
    { name: 'the majority regained lets them go on', state: primary, input: { fence: undefined }, code: undefined },
  ];
  for (const row of rows) {
    it(row.name, () => {
      const verdict = writeVerdict(row.state, { ...open, ...row.input });
      expect(verdict.ok ? undefined : verdict.code).toBe(row.code);
    });
  }
});

describe('ackVerdict', () => {
  it('acknowledges a write committed at the epoch it was admitted at', () => {
    expect(ackVerdict(primary, 3, undefined, 0)).toBeUndefined();
  });
  it('does not when the shard moved on meanwhile, or the member was demoted', () => {
    expect(ackVerdict({ ...primary, epoch: 4, primary: b }, 3, undefined, 0)).toMatch(/epoch 4/);
    expect(ackVerdict({ ...primary, role: 'replica' }, 3, undefined, 0)).toMatch(/epoch 3/);
  });
  it('does not while the majority fences the primary', () => {
    expect(ackVerdict(primary, 3, { code: 'no_majority', reason: 'no majority heard' }, 0)).toBe('no majority heard');
  });
});

const lease = { ttlMs: 5000, maxLag: 100, renewalSentAt: 1000, holdsKey: true, overdue: false, waiting: undefined };
const held: MemberState = { ...primary, lease };
const follower: MemberState = { ...replica, lease: { ...lease, holdsKey: false } };

/** With a coordinator: state, event, and the state and effects that follow. */
const leaseRows: { name: string; from: MemberState; event: MemberEvent; to: Partial<MemberState>; effects: MemberEffect[] }[] = [
  {
    name: 'a complete replica close behind first leaves a vacant key to the primary',
    from: follower,
    event: { type: 'keyVacant', complete: true, lag: 100, now: 10_000, etcdDataKept: true },
    to: { lease: { ...follower.lease!, waiting: 'the vacant key is left to the primary first', vacantSince: 10_000, campaignAt: 10_750 } },
    effects: [],
  },
  {
    name: 'then, once the head start (one and a half polls) has passed, campaigns for it',
    from: { ...follower, lease: { ...follower.lease!, vacantSince: 10_000 } },
    event: { type: 'keyVacant', complete: true, lag: 100, now: 10_750, etcdDataKept: true },
    to: { lease: { ...follower.lease!, vacantSince: 10_000, waiting: undefined } },
    effects: [{ type: 'campaign', knownEpoch: 3 }],
  },
  {
    name: "when etcd's data is new, lost or restored, a replica leaves the key to the primary for a whole TTL",
    from: { ...follower, lease: { ...follower.lease!, vacantSince: 10_000 } },
    event: { type: 'keyVacant', complete: true, lag: 0, now: 14_999, etcdDataKept: false },
    to: {
      lease: {
        ...follower.lease!,
        vacantSince: 10_000,
        waiting:
          "etcd's data is new, lost or restored (no epoch counter, or its revision went back): the vacant key is left to the primary for a whole lease's time",
        campaignAt: 15_000,
      },
    },
    effects: [],
  },
  {
    name: 'and campaigns once the TTL has passed',
    from: { ...follower, lease: { ...follower.lease!, vacantSince: 10_000 } },
    event: { type: 'keyVacant', complete: true, lag: 0, now: 15_000, etcdDataKept: false },
    to: { lease: { ...follower.lease!, vacantSince: 10_000, waiting: undefined } },
    effects: [{ type: 'campaign', knownEpoch: 3 }],
  },
  {
    name: 'a primary campaigns at once then too: it is the one whose lease etcd forgot',
    from: { ...held, lease: { ...lease, holdsKey: false } },
    event: { type: 'keyVacant', complete: true, lag: 0, now: 0, etcdDataKept: false },
    to: { lease: { ...lease, holdsKey: false, vacantSince: 0 } },
    effects: [{ type: 'campaign', knownEpoch: 3 }],
  },
  {
    name: 'a replica started less than a TTL ago leaves the key to a primary that may be starting too',
    from: { ...follower, lease: { ...follower.lease!, startedAt: 10_000, vacantSince: 10_000 } },
    event: { type: 'keyVacant', complete: true, lag: 0, now: 14_999, etcdDataKept: true },
    to: {
      lease: {
        ...follower.lease!,
        startedAt: 10_000,
        vacantSince: 10_000,
        waiting: "it started moments ago: the vacant key is left to the primary, which may be starting too, for a whole lease's time",
        campaignAt: 15_000,
      },
    },
    effects: [],
  },
  {
    name: 'and campaigns once it has run for a TTL',
    from: { ...follower, lease: { ...follower.lease!, startedAt: 10_000, vacantSince: 10_000 } },
    event: { type: 'keyVacant', complete: true, lag: 0, now: 15_000, etcdDataKept: true },
    to: { lease: { ...follower.lease!, startedAt: 10_000, vacantSince: 10_000, waiting: undefined } },
    effects: [{ type: 'campaign', knownEpoch: 3 }],
  },
  {
    name: 'a replica too far behind waits, and says why',
    from: follower,
    event: { type: 'keyVacant', complete: true, lag: 101, now: 0, etcdDataKept: true },
    to: { lease: { ...follower.lease!, waiting: 'it was 101 entries behind its primary at the last contact (max_lag_on_failover is 100)', vacantSince: 0 } },
    effects: [],
  },
  {
    name: 'a replica without a complete copy waits',
    from: follower,
    event: { type: 'keyVacant', complete: false, lag: 0, now: 0, etcdDataKept: true },
    to: { lease: { ...follower.lease!, waiting: 'its copy of the shard is incomplete', vacantSince: 0 } },
    effects: [],
  },
  {
    name: 'a primary whose key vanished (its lease lapsed) no longer holds it, and campaigns again',
    from: held,
    event: { type: 'keyVacant', complete: false, lag: 0, now: 0, etcdDataKept: true },
    to: { lease: { ...lease, holdsKey: false, vacantSince: 0 } },
    effects: [{ type: 'campaign', knownEpoch: 3 }],
  },
  {
    name: 'a replica that wins becomes primary at the campaign epoch, the lease having expired',
    from: follower,
    event: { type: 'campaignWon', epoch: 4, kind: 'lease_expired', complete: true },
    to: { role: 'primary', epoch: 4, primary: a, lease: { ...lease, holdsKey: true, takingOver: false } },
    effects: [
      { type: 'adoptEpoch', epoch: 4, kind: 'lease_expired' },
      { type: 'storeEpochs' },
      { type: 'become', role: 'primary', epoch: 4, rebuildFirst: false },
    ],
  },
  {
    name: 'a primary that wins again serves at the new epoch',
    from: { ...held, lease: { ...lease, holdsKey: false } },
    event: { type: 'campaignWon', epoch: 5, kind: 'lease_expired', complete: true },
    to: { epoch: 5, lease: { ...lease, takingOver: false } },
    effects: [{ type: 'adoptEpoch', epoch: 5, kind: 'lease_expired' }, { type: 'storeEpochs' }, { type: 'raise', epoch: 5 }],
  },
  {
    name: 'a primary that sees another member hold the key becomes its replica (a lost campaign, or it was cut off)',
    from: held,
    event: { type: 'keyHeld', member: b, epoch: 4, ours: false, complete: true },
    to: { role: 'replica', epoch: 4, primary: b, lease: { ...lease, holdsKey: false } },
    effects: [{ type: 'storeEpochs' }, { type: 'become', role: 'replica' }],
  },
  {
    name: 'a key that names this member under a lease it no longer has is not held',
    from: { ...held, lease: { ...lease, holdsKey: false } },
    event: { type: 'keyHeld', member: a, epoch: 3, ours: false, complete: true },
    to: { lease: { ...lease, holdsKey: false } },
    effects: [],
  },
  {
    name: 'its own key at an epoch it never adopted (a lost answer, a crash after a won campaign) is given up',
    from: follower,
    event: { type: 'keyHeld', member: a, epoch: 4, ours: true, complete: true },
    to: { role: 'replica', epoch: 3, lease: { ...lease, holdsKey: false } },
    effects: [{ type: 'resign' }],
  },
  {
    name: "but not while its own failover's promotion is on its way",
    from: { ...follower, lease: { ...follower.lease!, takingOver: true } },
    event: { type: 'keyHeld', member: a, epoch: 4, ours: true, complete: true },
    to: { role: 'replica', epoch: 3, lease: { ...follower.lease!, takingOver: true } },
    effects: [],
  },
  {
    name: 'a failover through etcd marks its start and its end',
    from: follower,
    event: { type: 'takeOverStarted' },
    to: { lease: { ...follower.lease!, takingOver: true } },
    effects: [],
  },
  {
    name: 'its end, promoted or not, lets its own key at a new epoch be given up again',
    from: { ...follower, lease: { ...follower.lease!, takingOver: true } },
    event: { type: 'takeOverEnded' },
    to: { lease: { ...follower.lease!, takingOver: false } },
    effects: [],
  },
  {
    name: 'a paused primary that wins a new epoch from etcd settles its pause (whoever asked for it lost)',
    from: { ...held, lease: { ...lease, holdsKey: false }, pauseUntil: 9_000, unsettled: true },
    event: { type: 'campaignWon', epoch: 5, kind: 'lease_expired', complete: true },
    to: { epoch: 5, pauseUntil: 0, unsettled: false, lease: { ...lease, takingOver: false } },
    effects: [{ type: 'adoptEpoch', epoch: 5, kind: 'lease_expired' }, { type: 'storeEpochs' }, { type: 'raise', epoch: 5 }, { type: 'clearPause' }],
  },
  {
    name: 'its own key under its own lease is held',
    from: { ...held, lease: { ...lease, holdsKey: false } },
    event: { type: 'keyHeld', member: a, epoch: 3, ours: true, complete: true },
    to: { lease },
    effects: [],
  },
];

describe('with a coordinator', () => {
  const at = (now: number) => ({ now, sentEpoch: undefined, fence: undefined });

  it('starts confirmed by nobody but holding no key: a primary takes writes only once it holds one', () => {
    const { state } = start({
      self: a,
      epoch: 2,
      primary: a,
      servedAs: 'primary',
      confirmed: true,
      pausedAtEpoch: undefined,
      coordinator: { ttlMs: 5000, maxLag: 100, startedAt: 0 },
    });
    expect(state.lease).toMatchObject({ holdsKey: false, renewalSentAt: Number.NEGATIVE_INFINITY });
    expect(writeVerdict(state, at(0))).toMatchObject({ ok: false, code: 'lease_expired' });
  });

  it('takes writes while the lease surely lives, and stops at its TTL minus the margin after the last renewal sent', () => {
    expect(writeVerdict(held, at(5000))).toEqual({ ok: true });
    expect(writeVerdict(held, at(5500))).toMatchObject({ ok: false, code: 'lease_expired' });
    const renewed = step(held, { type: 'leaseRenewed', sentAt: 4000 });
    expect(writeVerdict(renewed.state, at(5500))).toEqual({ ok: true });
    // An answer to an older renewal does not move the deadline back.
    expect(step(renewed.state, { type: 'leaseRenewed', sentAt: 2000 }).state.lease?.renewalSentAt).toBe(4000);
  });

  it('does not acknowledge a write committed after the lease may have lapsed', () => {
    expect(ackVerdict(held, 3, undefined, 4000)).toBeUndefined();
    expect(ackVerdict(held, 3, undefined, 6000)).toMatch(/lease may have lapsed/);
  });

  it('marks a renewal overdue without giving up the key: the lease may still live when etcd returns', () => {
    const overdue = step(held, { type: 'renewalOverdue' });
    expect(overdue.state.lease).toMatchObject({ overdue: true, holdsKey: true });
    expect(step(overdue.state, { type: 'leaseRenewed', sentAt: 9000 }).state.lease).toMatchObject({ overdue: false, renewalSentAt: 9000 });
  });

  it('holds no key under a new lease', () => {
    expect(step(held, { type: 'leaseGranted', sentAt: 7000 }).state.lease).toMatchObject({ holdsKey: false, renewalSentAt: 7000 });
  });

  for (const row of leaseRows) {
    it(row.name, () => {
      const { state, effects } = step(row.from, row.event);
      expect(state).toEqual({ ...row.from, ...row.to });
      expect(effects).toEqual(row.effects);
    });
  }

  it('ignores coordinator events on a member without a coordinator', () => {
    expect(step(primary, { type: 'keyVacant', complete: true, lag: 0, now: 0, etcdDataKept: true })).toEqual({ state: primary, effects: [] });
  });
});
