// A member's role as one pure decision, in the spirit of etcd-io/raft's Step: `start` and `step` take
// what the member knows and what happened (the clock included, as an argument) and return what it knows
// now and the effects to carry out, in order. They do no I/O: node.ts carries the effects out (stores,
// promotes or demotes the store, rebuilds the role's parts), and roles.ts asks write-verdict.ts's
// `writeVerdict` whether a write may be taken and `ackVerdict` whether a committed one may be
// acknowledged. No other code changes a member's role.

import { canonicalAddress } from '../core/config.js';
import { replicaHeadStartMs, replicaHeadStartAfterEtcdLossMs } from './coordinator.js';

export type MemberRoleName = 'primary' | 'replica';

/** How a promotion came about (a ShardEpoch's kind). */
export type PromotionKind = 'switchover' | 'forced' | 'lease_expired';

/**
 * With a coordinator (etcd, coordinator.ts): the member's lease and whether it holds its shard's key. A
 * primary takes and acknowledges writes only while it holds the key and its lease surely lives.
 */
export interface LeaseState {
  readonly ttlMs: number;
  /** A replica further behind than this many entries does not campaign. */
  readonly maxLag: number;
  /** When (performance.now()) the member sent the last keepalive (or grant) etcd answered; -Infinity: none. */
  readonly renewalSentAt: number;
  /** Whether the shard's key names this member, bound to its current lease. */
  readonly holdsKey: boolean;
  /** A renewal failed and the lease may lapse: shown in /status. */
  readonly overdue: boolean;
  /** Why this member does not campaign for its vacant shard, if it does not. */
  readonly waiting: string | undefined;
  /** When this member first saw its shard's key vacant, since it last saw it held. */
  readonly vacantSince?: number;
  /** When (performance.now()) the member started: a replica just started leaves a vacant key to a primary that may be starting too. */
  readonly startedAt?: number;
  /** When a replica that leaves a vacant key to its primary campaigns, unless the key is taken first: the keeper reads the key again then. */
  readonly campaignAt?: number;
  /**
   * A failover through etcd (`kvshard failover`) runs on this member: its transaction may have given the
   * member the key before the promotion is carried out, so its own key at a new epoch is no cause to resign.
   */
  readonly takingOver?: boolean;
}

/** What a member knows of its own shard and of itself. */
export interface MemberState {
  /** This member's address (canonical). */
  readonly self: string;
  readonly role: MemberRoleName;
  /** The shard's epoch as this member acts on it, and the member that epoch names (canonical). */
  readonly epoch: number;
  readonly primary: string;
  /** Whether a majority (or the shard's other member) has confirmed this member's epochs since it started. */
  readonly confirmed: boolean;
  /** Until when (performance.now() milliseconds) a switchover pause holds this primary's writes; 0: no pause. */
  readonly pauseUntil: number;
  /** A switchover pause was answered and its outcome is not known yet: writes wait for it after pauseUntil. */
  readonly unsettled: boolean;
  /** With a coordinator: its lease and key (undefined without one). */
  readonly lease?: LeaseState;
}

/** What a member's start knows: the epoch its data dir kept, and what its store was last made to serve. */
export interface StartInput {
  readonly self: string;
  readonly epoch: number;
  readonly primary: string;
  /** The role the store was last promoted or demoted to; undefined before any (the config's role then). */
  readonly servedAs: MemberRoleName | undefined;
  /** False until a majority confirms: a member with peers that has not heard from them yet. */
  readonly confirmed: boolean;
  /** The epoch of a switchover pause this member answered as primary and never learned the outcome of. */
  readonly pausedAtEpoch: number | undefined;
  /**
   * With a coordinator: the lease's TTL, the lag bound of campaigns, and when (performance.now()) the
   * member started (undefined without one).
   */
  readonly coordinator?: { readonly ttlMs: number; readonly maxLag: number; readonly startedAt: number };
}

export type MemberEvent =
  /** The shard's epoch rose (an announcement, an exchange, a refusal or an outcome named it). */
  | { readonly type: 'epochSeen'; readonly epoch: number; readonly primary: string; readonly complete: boolean }
  /** A majority stored this member's promotion at `epoch`. `complete`: its store holds a complete copy. */
  | { readonly type: 'promotionGranted'; readonly epoch: number; readonly kind: PromotionKind; readonly complete: boolean }
  /** A failover of this member found no majority: nothing changes. */
  | { readonly type: 'promotionRefused' }
  | { readonly type: 'epochsConfirmed' }
  /** The other member asked this primary to pause for a switchover at `epoch`, until `until`. */
  | { readonly type: 'paused'; readonly epoch: number; readonly until: number }
  /** The member that asked for the pause called the switchover off. */
  | { readonly type: 'resumed' }
  /** The member that asked for the pause at `epoch` says it was not promoted (and now never will be). */
  | { readonly type: 'notPromoted'; readonly epoch: number; readonly now: number }
  /** With a coordinator: a new lease was granted, or the current one renewed, in answer to a request sent at `sentAt`. */
  | { readonly type: 'leaseGranted'; readonly sentAt: number }
  | { readonly type: 'leaseRenewed'; readonly sentAt: number }
  /** A renewal went unanswered (etcd unreachable): the lease may lapse. */
  | { readonly type: 'renewalOverdue' }
  /** The shard's key is vacant at `now`. `complete`: the store holds a complete copy; `lag`: entries behind the primary at the last contact. */
  | {
      readonly type: 'keyVacant';
      readonly complete: boolean;
      readonly lag: number;
      readonly now: number;
      /** False when etcd holds no epoch counter for the shard, or its revision went back lately: its data is new, lost or restored. */
      readonly etcdDataKept: boolean;
    }
  /** The shard's key names `member` at `epoch`; `ours`: bound to this member's current lease. */
  | { readonly type: 'keyHeld'; readonly member: string; readonly epoch: number; readonly ours: boolean; readonly complete: boolean }
  /** This member took the key at `epoch`: a campaign for a vacant key (kind lease_expired), or a failover through etcd. */
  | { readonly type: 'campaignWon'; readonly epoch: number; readonly kind: PromotionKind; readonly complete: boolean }
  /** A failover through etcd starts on this member, before its transaction is sent; and ends, won, refused or failed. */
  | { readonly type: 'takeOverStarted' }
  | { readonly type: 'takeOverEnded' };

export type MemberEffect =
  /** Store every shard's epoch as the view holds them (before the role changes by them). */
  | { readonly type: 'storeEpochs' }
  /** The view adopts this member's own promotion, so routing and peers learn it. */
  | { readonly type: 'adoptEpoch'; readonly epoch: number; readonly kind: PromotionKind }
  /** Close the old role's parts, make the store serve `role` (at `epoch`), build and start the new role's parts. */
  | { readonly type: 'become'; readonly role: 'primary'; readonly epoch: number; readonly rebuildFirst: boolean }
  | { readonly type: 'become'; readonly role: 'replica' }
  /** At start-up, before the role's parts are built: make the store serve this role. */
  | { readonly type: 'serve'; readonly role: 'primary'; readonly epoch: number; readonly promote: boolean }
  | { readonly type: 'serve'; readonly role: 'replica'; readonly demote: boolean }
  /** A primary whose shard's epoch rose still names it: it serves at the new epoch. */
  | { readonly type: 'raise'; readonly epoch: number }
  /** Store the pause (synced; its commit is also the barrier behind every write admitted before it). */
  | { readonly type: 'recordPause'; readonly epoch: number }
  | { readonly type: 'clearPause' }
  /** Once the pause runs out, ask the member that asked for it whether it was promoted, until it answers. */
  | { readonly type: 'askOutcome'; readonly epoch: number }
  /** With a coordinator: run one campaign for the vacant key, above `knownEpoch`. */
  | { readonly type: 'campaign'; readonly knownEpoch: number }
  /**
   * With a coordinator: give up the key this member holds at an epoch it never adopted (a failover whose
   * answer was lost, or a crash between a won campaign and storing it): revoke the lease, take a new one.
   */
  | { readonly type: 'resign' };

export interface Transition {
  readonly state: MemberState;
  readonly effects: readonly MemberEffect[];
}

const same = (a: string, b: string) => canonicalAddress(a) === canonicalAddress(b);

/**
 * A member starts: the epoch its data dir kept makes it primary or replica, whatever the config says. A
 * store last made to serve the other role is promoted or demoted first. A pause stored at this epoch
 * means a switchover's outcome is still to be learned: a primary asks before it takes writes.
 */
export function start(input: StartInput): Transition {
  const role: MemberRoleName = same(input.primary, input.self) ? 'primary' : 'replica';
  const pausedHere = role === 'primary' && input.pausedAtEpoch === input.epoch;
  const state: MemberState = {
    self: canonicalAddress(input.self),
    role,
    epoch: input.epoch,
    primary: canonicalAddress(input.primary),
    confirmed: input.confirmed,
    pauseUntil: 0,
    unsettled: pausedHere,
    ...(input.coordinator === undefined
      ? {}
      : {
          lease: {
            ttlMs: input.coordinator.ttlMs,
            startedAt: input.coordinator.startedAt,
            maxLag: input.coordinator.maxLag,
            renewalSentAt: Number.NEGATIVE_INFINITY,
            holdsKey: false,
            overdue: false,
            waiting: undefined,
          },
        }),
  };
  const effects: MemberEffect[] = [
    role === 'primary'
      ? { type: 'serve', role, epoch: input.epoch, promote: input.servedAs === 'replica' }
      : { type: 'serve', role, demote: input.servedAs === 'primary' },
  ];
  if (pausedHere) effects.push({ type: 'askOutcome', epoch: input.epoch });
  else if (input.pausedAtEpoch !== undefined) effects.push({ type: 'clearPause' });
  return { state, effects };
}

/** The shard's epoch rose to `epoch`, naming `primary`: the member follows it. */
function epochSeen(state: MemberState, epoch: number, primary: string, complete: boolean): Transition {
  if (epoch < state.epoch || (epoch === state.epoch && same(primary, state.primary))) return { state, effects: [] };
  const next: MemberState = { ...state, epoch, primary: canonicalAddress(primary) };
  const named = same(primary, state.self);
  if (named && state.role === 'replica') return becomePrimary(next, epoch, complete);
  if (!named && state.role === 'primary') {
    return { state: { ...next, role: 'replica', pauseUntil: 0, unsettled: false }, effects: [{ type: 'storeEpochs' }, { type: 'become', role: 'replica' }] };
  }
  if (named) return { state: next, effects: [{ type: 'storeEpochs' }, { type: 'raise', epoch }] };
  return { state: next, effects: [{ type: 'storeEpochs' }] };
}

/** Stored epochs first, then the transition; a member without a complete copy rebuilds before it serves. */
function becomePrimary(state: MemberState, epoch: number, complete: boolean): Transition {
  return {
    state: { ...state, role: 'primary', pauseUntil: 0, unsettled: false },
    effects: [{ type: 'storeEpochs' }, { type: 'become', role: 'primary', epoch, rebuildFirst: !complete }],
  };
}

export function step(state: MemberState, event: MemberEvent): Transition {
  switch (event.type) {
    case 'epochSeen':
      return epochSeen(state, event.epoch, event.primary, event.complete);
    case 'promotionGranted': {
      // A grant at or below the epoch known counts for nothing: a newer promotion has happened since.
      if (event.epoch <= state.epoch || state.role === 'primary') return { state, effects: [] };
      const promoted = becomePrimary({ ...state, epoch: event.epoch, primary: state.self }, event.epoch, event.complete);
      return { state: promoted.state, effects: [{ type: 'adoptEpoch', epoch: event.epoch, kind: event.kind }, ...promoted.effects] };
    }
    case 'promotionRefused':
      return { state, effects: [] };
    case 'epochsConfirmed':
      return { state: { ...state, confirmed: true }, effects: [] };
    case 'paused':
      if (state.role !== 'primary' || event.epoch !== state.epoch) return { state, effects: [] };
      return {
        state: { ...state, pauseUntil: event.until, unsettled: true },
        effects: [
          { type: 'recordPause', epoch: state.epoch },
          { type: 'askOutcome', epoch: state.epoch },
        ],
      };
    case 'resumed':
      if (state.pauseUntil === 0 && !state.unsettled) return { state, effects: [] };
      return { state: { ...state, pauseUntil: 0, unsettled: false }, effects: [{ type: 'clearPause' }] };
    case 'notPromoted':
      // A pause renewed meanwhile is a new switchover whose outcome this answer does not tell.
      if (!state.unsettled || state.pauseUntil > event.now || event.epoch !== state.epoch) return { state, effects: [] };
      return { state: { ...state, pauseUntil: 0, unsettled: false }, effects: [{ type: 'clearPause' }] };
    default:
      return leaseStep(state, event);
  }
}

/**
 * The shard's key is vacant. The primary has the shard's data and campaigns at once; a replica only with
 * a complete copy that was close behind at its last contact (Patroni's maximum_lag_on_failover), and
 * only after leaving the key to the primary for a head start: a whole TTL when etcd has lost its data,
 * and for a whole TTL after the member started.
 */
function keyVacant(state: MemberState, lease: LeaseState, event: Extract<MemberEvent, { type: 'keyVacant' }>): Transition {
  const vacantSince = lease.vacantSince ?? event.now;
  let waiting: string | undefined;
  let campaignAt: number | undefined;
  if (state.role === 'replica') {
    if (!event.complete) waiting = 'its copy of the shard is incomplete';
    else if (event.lag > lease.maxLag) waiting = `it was ${event.lag} entries behind its primary at the last contact (max_lag_on_failover is ${lease.maxLag})`;
    else {
      // Each wait a replica leaves the primary, with when it ends; the one that ends last holds.
      const waits: [number, string][] = [[vacantSince + replicaHeadStartMs(lease.ttlMs), 'the vacant key is left to the primary first']];
      if (!event.etcdDataKept) {
        const why =
          "etcd's data is new, lost or restored (no epoch counter, or its revision went back): the vacant key is left to the primary for a whole lease's time";
        waits.push([vacantSince + replicaHeadStartAfterEtcdLossMs(lease.ttlMs), why]);
      }
      if (lease.startedAt !== undefined) {
        // Both members of a shard start at once when a whole cluster starts (`./launch.sh`), a moment apart.
        const why = "it started moments ago: the vacant key is left to the primary, which may be starting too, for a whole lease's time";
        waits.push([lease.startedAt + lease.ttlMs, why]);
      }
      const [until, why] = waits.reduce((a, b) => (b[0] > a[0] ? b : a));
      if (event.now < until) {
        waiting = why;
        campaignAt = until;
      }
    }
  }
  const next: MemberState = { ...state, lease: { ...lease, holdsKey: false, waiting, vacantSince, campaignAt } };
  return { state: next, effects: waiting === undefined ? [{ type: 'campaign', knownEpoch: state.epoch }] : [] };
}

/** The fields of a vacant key's wait, cleared once the key is held again (by anyone) or resigned. */
const noVacancy = { waiting: undefined, vacantSince: undefined, campaignAt: undefined } as const;

/** The coordinator's events: they change nothing on a member without one. */
function leaseStep(state: MemberState, event: MemberEvent): Transition {
  const lease = state.lease;
  if (lease === undefined) return { state, effects: [] };
  const withLease = (changes: Partial<LeaseState>): MemberState => ({ ...state, lease: { ...lease, ...changes } });
  switch (event.type) {
    case 'leaseGranted':
      // A new lease holds no key: the one bound to the old lease goes with it.
      return { state: withLease({ renewalSentAt: event.sentAt, holdsKey: false, overdue: false }), effects: [] };
    case 'leaseRenewed':
      return { state: withLease({ renewalSentAt: Math.max(lease.renewalSentAt, event.sentAt), overdue: false }), effects: [] };
    case 'renewalOverdue':
      return { state: withLease({ overdue: true }), effects: [] };
    case 'keyVacant':
      return keyVacant(state, lease, event);
    case 'keyHeld': {
      const ours = event.ours && same(event.member, state.self);
      // Its own key at an epoch it does not serve at: adopting it now could overlap a primary that has not
      // yet read the key, so the member resigns, and the campaign that follows picks a primary afresh.
      if (ours && event.epoch > state.epoch) {
        // Unless its own failover's promotion is on its way (takeOverEnded settles it: promoted, or resign then).
        if (lease.takingOver === true) return { state, effects: [] };
        return { state: withLease({ holdsKey: false, ...noVacancy }), effects: [{ type: 'resign' }] };
      }
      const held = { state: withLease({ holdsKey: ours, ...noVacancy }), effects: [] as MemberEffect[] };
      if (ours || event.epoch < state.epoch) return held;
      // Another member holds the shard (or this one, under a lease it no longer has): follow the epoch named.
      return epochSeen(held.state, event.epoch, event.member, event.complete);
    }
    case 'campaignWon': {
      const won = withLease({ holdsKey: true, ...noVacancy, takingOver: false });
      if (event.epoch <= state.epoch) return { state: won, effects: [] };
      const adopt: MemberEffect = { type: 'adoptEpoch', epoch: event.epoch, kind: event.kind };
      if (state.role === 'primary') {
        // A new epoch from etcd settles any switchover pause at the old one: whoever asked for it lost.
        const paused = state.pauseUntil !== 0 || state.unsettled;
        return {
          state: { ...won, epoch: event.epoch, primary: state.self, pauseUntil: 0, unsettled: false },
          effects: [adopt, { type: 'storeEpochs' }, { type: 'raise', epoch: event.epoch }, ...(paused ? [{ type: 'clearPause' } as const] : [])],
        };
      }
      const promoted = becomePrimary({ ...won, epoch: event.epoch, primary: state.self }, event.epoch, event.complete);
      return { state: promoted.state, effects: [adopt, ...promoted.effects] };
    }
    case 'takeOverStarted':
      return { state: withLease({ takingOver: true }), effects: [] };
    case 'takeOverEnded':
      return { state: withLease({ takingOver: false }), effects: [] };
    default:
      return { state, effects: [] };
  }
}
