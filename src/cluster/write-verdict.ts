// What a member's state lets through (member-role.ts keeps the state): whether a write is taken, and
// whether a committed write is acknowledged. Pure, with the clock and the majority's fence as arguments;
// the write path asks on every write.

import { leaseHolds } from './coordinator.js';
import type { MemberState } from './member-role.js';

/** Why a write must not be taken, by code; see roles.ts for the errors these become. */
export type WriteVerdict =
  | { readonly ok: true }
  | {
      readonly ok: false;
      readonly code:
        | 'not_primary'
        | 'epoch_behind'
        | 'failover_in_progress'
        | 'failover_unsettled'
        | 'epoch_unconfirmed'
        | 'no_majority'
        | 'promotion_pending'
        | 'lease_expired';
      readonly reason: string;
    };

/** The verdict of every write taken: one object, since the write path asks for it on every write. */
const taken: WriteVerdict = { ok: true };

/** What a write's admission reads besides the member's state. */
export interface WriteInput {
  readonly now: number;
  /** The epoch of this shard the forwarding node knows, if the write was forwarded. */
  readonly sentEpoch: number | undefined;
  /** The majority's verdict (QuorumState.writeFence): no majority heard for half a node timeout, or a newer grant unresolved. */
  readonly fence: { readonly code: 'no_majority' | 'promotion_pending'; readonly reason: string } | undefined;
}

/**
 * Whether a primary takes a write now: only as primary, at an epoch no sender knows to be old, outside a
 * switchover's pause and while its outcome is unknown, once its epochs are confirmed, and while the
 * majority lets it (Redis Cluster's minority rule, and no unresolved grant above its epoch).
 */
export function writeVerdict(state: MemberState, input: WriteInput): WriteVerdict {
  if (state.role !== 'primary') return { ok: false, code: 'not_primary', reason: `${state.primary} is primary at epoch ${state.epoch}` };
  if (input.sentEpoch !== undefined && input.sentEpoch > state.epoch) {
    return { ok: false, code: 'epoch_behind', reason: `the sender knows epoch ${input.sentEpoch} of this shard, this primary ${state.epoch}` };
  }
  if (state.pauseUntil > input.now) return { ok: false, code: 'failover_in_progress', reason: 'a switchover hands the primary role to the other member' };
  if (state.unsettled) {
    return { ok: false, code: 'failover_unsettled', reason: 'a switchover ended without word of whether the other member was promoted; asking it' };
  }
  if (!state.confirmed) return { ok: false, code: 'epoch_unconfirmed', reason: 'this primary has not yet heard its epochs from a majority of nodes' };
  if (input.fence !== undefined) return { ok: false, ...input.fence };
  const lapse = leaseLapse(state, input.now);
  if (lapse !== undefined) return { ok: false, code: 'lease_expired', reason: lapse };
  return taken;
}

/**
 * Whether a write admitted at `admittedEpoch` and committed may be acknowledged: not when the member's
 * standing changed meanwhile (another epoch, another role) or the majority fences it now, since the
 * cluster may have promoted the other member and acknowledged writes there at a newer epoch.
 */
export function ackVerdict(state: MemberState, admittedEpoch: number, fence: WriteInput['fence'], now: number): string | undefined {
  if (state.epoch !== admittedEpoch || state.role !== 'primary') return `the shard moved to epoch ${state.epoch} (primary ${state.primary})`;
  return fence?.reason ?? leaseLapse(state, now);
}

/** With a coordinator: why this primary's lease does not surely hold its shard now, if it does not. */
function leaseLapse(state: MemberState, now: number): string | undefined {
  const lease = state.lease;
  if (lease === undefined) return undefined;
  if (!lease.holdsKey) return "this member does not hold its shard's key in etcd (yet)";
  if (!leaseHolds(lease.renewalSentAt, lease.ttlMs, now)) return 'its etcd lease may have lapsed: no renewal answered in time';
  return undefined;
}
