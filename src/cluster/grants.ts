// Promotion grants, as Redis Cluster's failover authorization gives them: a member becomes its shard's
// primary at epoch E only once a majority of the cluster's nodes have each stored, synced, that they
// grant E of that shard to that member. A node grants at most one member per epoch of a shard, and only
// an epoch above every one it has granted or knows for the shard, so two members can never both collect
// a majority for one epoch. A grant is not an epoch: the cluster learns the new epoch only when the
// promoted member announces it. A grant that a promotion never used blocks nothing but its own epoch.
//
// decideGrant is the whole rule, pure: the node's state and the clock are arguments.

import type { ShardEpoch } from './epochs.js';

/** What a node has granted for one shard: the highest epoch, and to whom. */
export interface Grant {
  readonly epoch: number;
  readonly primary: string;
}

/** Every shard's highest grant, by shard name, as the store keeps it. */
export type GrantTable = Readonly<Record<string, Grant>>;

/** What a member asks of every node: store that `candidate` is `shard`'s primary at `epoch`. */
export interface GrantRequest {
  readonly shard: string;
  readonly epoch: number;
  readonly candidate: string;
  /** switchover: the old primary paused and handed over; forced: the old primary did not ask. */
  readonly kind: 'switchover' | 'forced';
}

/** What the deciding node knows. */
export interface GranterState {
  /** This node's address. */
  readonly self: string;
  /** Whether this node knows the cluster's epochs (false: a new or emptied data dir, not yet told by a majority). */
  readonly epochsKnown: boolean;
  /** The epoch this node knows for the shard. */
  readonly known: ShardEpoch;
  /** Its highest grant for the shard, if any. */
  readonly granted: Grant | undefined;
  /** When this node last heard from the shard's primary as it knows it. */
  readonly primaryLastHeard: number;
  readonly nodeTimeoutMs: number;
  readonly now: number;
}

export type GrantDecision =
  | { readonly grant: true /** False when this node had granted exactly this already: nothing to store. */; readonly store: boolean }
  | { readonly grant: false; readonly reason: string; readonly code: 'unknown' | 'stale_epoch' | 'granted_other' | 'primary_alive' };

export function decideGrant(state: GranterState, req: GrantRequest): GrantDecision {
  const { known, granted } = state;
  if (!state.epochsKnown) {
    return { grant: false, code: 'unknown', reason: `${state.self} does not know the cluster's epochs yet (a new data dir, not yet told by a majority)` };
  }
  if (req.epoch <= known.epoch) {
    return { grant: false, code: 'stale_epoch', reason: `${state.self} knows epoch ${known.epoch} of ${req.shard} (primary ${known.primary})` };
  }
  // A forced promotion is checked against the primary's silence first, also when asked again for an
  // epoch granted before: the primary may have been heard since.
  if (req.kind === 'forced') {
    if (known.primary === state.self) {
      return { grant: false, code: 'primary_alive', reason: `${state.self} is the primary of ${req.shard} and is up` };
    }
    const silentMs = state.now - state.primaryLastHeard;
    if (silentMs < state.nodeTimeoutMs) {
      return {
        grant: false,
        code: 'primary_alive',
        reason: `${state.self} heard from the primary ${known.primary} ${Math.round(Math.max(0, silentMs))} ms ago (node_timeout_ms is ${state.nodeTimeoutMs})`,
      };
    }
  }
  if (granted !== undefined && req.epoch === granted.epoch && req.candidate === granted.primary) return { grant: true, store: false };
  if (granted !== undefined && req.epoch <= granted.epoch) {
    return {
      grant: false,
      code: 'granted_other',
      reason: `${state.self} granted epoch ${granted.epoch} of ${req.shard} to ${granted.primary} already`,
    };
  }
  return { grant: true, store: true };
}

/** A grant table as another node sent it: entries that are not a positive epoch and a string are dropped. */
export function decodeGrants(raw: unknown): GrantTable {
  if (typeof raw !== 'object' || raw === null) return {};
  const out: Record<string, Grant> = {};
  for (const [shard, g] of Object.entries(raw as Record<string, unknown>)) {
    const grant = g as Partial<Grant> | null;
    if (grant && Number.isSafeInteger(grant.epoch) && (grant.epoch as number) > 0 && typeof grant.primary === 'string') {
      out[shard] = { epoch: grant.epoch as number, primary: grant.primary.slice(0, 300) };
    }
  }
  return out;
}
