// The promotion half of a failover (failover.ts has the endpoints and the switchover's pause and
// catch-up): grants asked of every node and stored where they are given, the count of a majority, and
// the question a primary asks a member ("were you promoted?") when a switchover or a grant leaves it
// unsure. See cluster/grants.ts for the rule a node grants by.

import { sleep } from '../core/backoff.js';
import { canonicalAddress, type ShardConfig } from '../core/config.js';
import { BadRequestError } from '../core/errors.js';
import { grantRequestTimeoutMs } from '../core/limits.js';
import type { Log } from '../core/log.js';
import type { ClusterView } from '../cluster/cluster-view.js';
import { otherMember, type EpochKind, type ShardEpoch } from '../cluster/epochs.js';
import { decideGrant, decodeGrants, type GrantDecision, type GrantRequest } from '../cluster/grants.js';
import { isMajority } from '../cluster/quorum.js';
import type { InternalClient } from '../peer/internal-client.js';
import type { Store } from '../storage/store.js';
import type { LeaseKeeper } from './lease-keeper.js';
import type { Member } from './member.js';

export const outcomePath = '/internal/failover/outcome';
export const grantPath = '/internal/grant';

/** How often a forced failover asks again for the grants it lacks (the primary's silence grows meanwhile). */
const grantRetryMs = 250;
/** Grant rounds at most: each re-asks every node, at a higher epoch when one had granted past it. */
const grantRoundsMax = 100;
/** How often a primary whose switchover pause ended asks the member whether it was promoted. */
export const outcomeRetryMs = 500;

/** What the failover endpoints need of the node (node.ts implements it). */
export interface FailoverHost {
  readonly shard: ShardConfig;
  readonly address: string;
  readonly token: string;
  readonly log: Log;
  readonly view: ClusterView;
  readonly store: Store;
  /** The member's role, epoch and pause (member-role.ts), changed only through it; undefined on a drain. */
  readonly member: Member | undefined;
  /** With a coordinator: failovers take the shard's key in etcd instead of nodes' grants. */
  readonly coordinator?: Pick<LeaseKeeper, 'takeOver'>;
  /** The role this node serves now. */
  role(): string;
  /** Makes this member its shard's primary at `epoch`; resolves once it serves as primary. */
  promote(kind: Exclude<EpochKind, 'initial'>, epoch: number): Promise<ShardEpoch>;
  /** Tells every node of the layout this node's epochs once; resolves with how many answered, of how many, and who did not. */
  broadcast(): Promise<{ reached: number; peers: number; missed: string[] }>;
}

export interface FailoverOptions {
  readonly force: boolean;
  readonly withoutMajority: boolean;
  /** Set when the old primary asked for the outcome before the promotion: the failover is called off. */
  readonly attempt: { cancelled: boolean };
  /** Stores a grant here, one decision at a time. */
  readonly grant: (req: GrantRequest) => Promise<GrantDecision>;
}

/** A grant request as the candidate sent it, checked against this node's config. */
export function decodeGrantRequest(body: Record<string, unknown>, host: FailoverHost): GrantRequest {
  const { shard, epoch, candidate, kind } = body;
  const listed = typeof shard === 'string' ? host.view.config.shards.find((s) => s.name === shard) : undefined;
  if (!listed) throw new BadRequestError("shard must name a shard of this node's config");
  if (!Number.isSafeInteger(epoch) || (epoch as number) < 1) throw new BadRequestError('epoch must be a positive integer');
  if (typeof candidate !== 'string' || ![listed.address, listed.replica].some((m) => canonicalAddress(m) === canonicalAddress(candidate))) {
    throw new BadRequestError(`candidate must be a member of ${listed.name}`);
  }
  if (kind !== 'switchover' && kind !== 'forced') throw new BadRequestError('kind must be switchover or forced');
  return { shard: listed.name, epoch: epoch as number, candidate: canonicalAddress(candidate), kind };
}

/** Decides a grant here and stores it, synced, before the answer (see cluster/grants.ts). */
export async function grantHere(host: FailoverHost, req: GrantRequest): Promise<GrantDecision> {
  const { view, store } = host;
  const known = view.epochIfListed(req.shard)!;
  const decision = decideGrant(
    {
      self: canonicalAddress(host.address),
      epochsKnown: view.quorum.epochsKnown,
      known: { ...known, primary: canonicalAddress(known.primary) },
      granted: decodeGrants(store.failover.grants())[req.shard],
      primaryLastHeard: view.quorum.liveness.lastHeardFrom(known.primary),
      nodeTimeoutMs: view.config.nodeTimeoutMs,
      now: performance.now(),
    },
    req,
  );
  if (decision.grant && decision.store) {
    await store.failover.recordGrant(req.shard, { epoch: req.epoch, primary: req.candidate });
    host.log.info(`granted epoch ${req.epoch} of ${req.shard} to ${req.candidate} (${req.kind})`);
  }
  return decision;
}

export interface Votes {
  readonly epoch: number;
  readonly granted: Set<string>;
  readonly refusals: Map<string, string>;
  readonly majority: boolean;
}

/**
 * Asks every voter (this node included) to grant this member the next epoch, until a majority of each
 * voter set has (see ClusterView.voterSets). A switchover asks once; a forced failover asks again until
 * the nodes have not heard from the primary for node_timeout_ms, or a deadline past that. A node that
 * granted a higher epoch already makes the next round ask above it.
 */
export async function collectGrants(host: FailoverHost, http: InternalClient, kind: 'switchover' | 'forced', options: FailoverOptions): Promise<Votes> {
  const { shard, view, store } = host;
  const self = canonicalAddress(host.address);
  const sets = view.voterSets();
  const others = [...new Set(sets.flat())].filter((a) => a !== self);
  // A switchover may ask again only above a grant it met (within one request timeout, inside its pause).
  const deadline = performance.now() + (kind === 'forced' ? view.config.nodeTimeoutMs : 0) + grantRequestTimeoutMs;
  let epoch = Math.max(view.epochOf(shard.name).epoch, decodeGrants(store.failover.grants())[shard.name]?.epoch ?? 0, view.quorum.highestGrantSeen) + 1;
  let votes: Votes = { epoch, granted: new Set(), refusals: new Map(), majority: false };
  for (let round = 0; round < grantRoundsMax; round++) {
    const req: GrantRequest = { shard: shard.name, epoch, candidate: self, kind };
    const granted = new Set<string>();
    const refusals = new Map<string, string>();
    let higher = 0;
    const own = await options.grant(req);
    if (own.grant) granted.add(self);
    else refusals.set(self, own.reason);
    await Promise.all(
      others.map(async (address) => {
        try {
          const reply = await http.post<{ granted?: boolean; reason?: string; epochs?: unknown; grants?: unknown }>(address, grantPath, req);
          const data = reply.data;
          if (reply.status !== 200 || !data) {
            refusals.set(address, `HTTP ${reply.status}`);
            return;
          }
          view.learnEpochs(data.epochs, `${address}'s grant answer`);
          if (data.granted === true) {
            granted.add(address);
            return;
          }
          refusals.set(address, String(data.reason ?? 'refused').slice(0, 300));
          // A node that granted another member this epoch or above makes the next round ask above it.
          higher = Math.max(higher, decodeGrants(data.grants)[shard.name]?.epoch ?? 0);
        } catch (err) {
          refusals.set(address, `no answer (${(err as Error).message})`);
        }
      }),
    );
    votes = { epoch, granted, refusals, majority: isMajority(granted, sets) };
    if (votes.majority || view.epochOf(shard.name).epoch >= epoch || options.attempt.cancelled) return votes;
    if (performance.now() > deadline) return votes;
    if (higher >= epoch) {
      epoch = higher + 1;
      continue;
    }
    if (kind === 'switchover' || performance.now() + grantRetryMs > deadline) return votes;
    await sleep(grantRetryMs);
  }
  return votes;
}

/**
 * Asks `member` whether it was promoted above `epoch`; learns its epochs when it was. 'unknown' when it
 * does not answer.
 */
export async function askOutcome(host: FailoverHost, http: InternalClient, member: string, epoch: number): Promise<'promoted' | 'not_promoted' | 'unknown'> {
  try {
    const reply = await http.post<{ promoted?: boolean; epochs?: unknown }>(member, outcomePath, { epoch });
    if (reply.status !== 200 || typeof reply.data?.promoted !== 'boolean') return 'unknown';
    host.view.learnEpochs(reply.data.epochs, `${member}'s failover outcome`);
    return reply.data.promoted ? 'promoted' : 'not_promoted';
  } catch {
    return 'unknown';
  }
}

/**
 * At a paused primary: once the pause has run out with no new epoch learned and no resume, asks the
 * member that asked for the pause whether it was promoted, until it answers; writes wait meanwhile.
 */
export async function settleAfterPause(host: FailoverHost, http: InternalClient, epoch: number, signal: AbortSignal): Promise<void> {
  const member = otherMember(host.shard, host.address);
  const self = host.member;
  while (self?.state.unsettled && !signal.aborted) {
    const wait = self.state.pauseUntil - performance.now();
    if (wait > 0) {
      await sleep(wait, signal).catch(() => undefined);
      continue;
    }
    if (self.state.role !== 'primary' || self.state.epoch !== epoch) return;
    const answer = await askOutcome(host, http, member, epoch);
    if (answer === 'not_promoted') {
      await self.dispatch({ type: 'notPromoted', epoch, now: performance.now() });
      if (!self.state.unsettled) {
        host.log.info(`writes to ${host.shard.name} resume: ${member} says the switchover did not promote it`);
        return;
      }
    }
    // Promoted: the epoch learned from the answer ends the loop (the role changes); else ask again.
    await sleep(outcomeRetryMs, signal).catch(() => undefined);
  }
}
