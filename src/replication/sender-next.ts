// What the replication sender does next, decided from its state, the log's bounds and the replica's last
// answer alone: stop, linger for more entries, resync, send a batch (or a heartbeat), and after an answer
// or a failure how its state changes. Pure, so a unit test covers every case from a table;
// replication-sender.ts does the requests, the sleeps and the log trims.

import { logTrimEntriesMin, replicationLingerEntriesMin, replicationLingerMs } from '../core/limits.js';
import type { ReplicaReply } from './replication-protocol.js';

export type SenderState = 'connecting' | 'streaming' | 'resyncing' | 'unreachable' | 'refused' | 'stopped';

export interface SenderFacts {
  readonly stopping: boolean;
  readonly state: SenderState;
  /** The replica's applied sequence as last reported by it; undefined until it first answers. */
  readonly ackedSeq: number | undefined;
  /** The replication log's oldest retained sequence, and its newest. */
  readonly firstSeq: number;
  readonly lastSeq: number;
  /** Writes waiting for ack=replica. */
  readonly ackWaiters: number;
  /** Whether this round already lingered once. */
  readonly lingered: boolean;
}

export type SenderAction =
  | { readonly kind: 'stop' }
  | { readonly kind: 'linger'; readonly ms: number }
  | { readonly kind: 'resync' }
  /** Entries from `fromSeq` on; none (a heartbeat) when the replica has them all or its position is unknown. */
  | { readonly kind: 'send'; readonly fromSeq: number; readonly heartbeat: boolean };

/** The sender's next step in a round. */
export function nextAction(facts: SenderFacts): SenderAction {
  const { ackedSeq, firstSeq, lastSeq } = facts;
  if (facts.stopping) return { kind: 'stop' };
  // While streaming under load, a few pending entries wait briefly for more, so that each request carries
  // more of them: one round trip costs the primary as much CPU as dozens of writes. Never while a client
  // waits for ack=replica, so that wait is not stretched.
  const pending = ackedSeq === undefined ? 0 : lastSeq - ackedSeq;
  if (!facts.lingered && facts.state === 'streaming' && facts.ackWaiters === 0 && pending > 0 && pending < replicationLingerEntriesMin) {
    return { kind: 'linger', ms: replicationLingerMs };
  }
  // Behind the retained log, or ahead of it (this primary's log was put back to an older copy).
  if (ackedSeq !== undefined && (ackedSeq + 1 < firstSeq || ackedSeq > lastSeq)) return { kind: 'resync' };
  // Until the replica first answers, a heartbeat from the log's end learns its position.
  const fromSeq = ackedSeq === undefined ? lastSeq + 1 : ackedSeq + 1;
  return { kind: 'send', fromSeq, heartbeat: fromSeq > lastSeq };
}

/** What the replica's answer to a batch means: resync, or it streams (caught up, or more to send). */
export type ReplyOutcome = { readonly kind: 'resync'; readonly replicaAhead: boolean } | { readonly kind: 'streaming'; readonly caughtUp: boolean };

export function afterReply(reply: ReplicaReply, lastSeq: number): ReplyOutcome {
  if (reply.error === 'resync_needed') return { kind: 'resync', replicaAhead: false };
  // The replica is further on than this primary's log: its sequences past ours are other writes (this
  // data dir was put back to an older copy), so they acknowledge nothing here. Resync (which the replica
  // refuses unless this primary was started to overwrite it).
  if (reply.appliedSeq > lastSeq) return { kind: 'resync', replicaAhead: true };
  // A gap only moves the position back to the replica's; the next round resends from there.
  return { kind: 'streaming', caughtUp: reply.error === undefined && reply.appliedSeq >= lastSeq };
}

/**
 * What a failed round means, before the sender backs off: the replica refuses this primary's data (it
 * says why), it cannot be reached, or it refused only this request (the next round starts over).
 */
export type FailureOutcome = { readonly kind: 'refused'; readonly reason: string } | { readonly kind: 'unreachable' } | { readonly kind: 'retry' };

/** `refusal` is the replica's 409 answer, undefined when the request itself failed. */
export function afterFailure(refusal: ReplicaReply | undefined): FailureOutcome {
  if (refusal === undefined) return { kind: 'unreachable' };
  if (refusal.error === 'resync_refused' || refusal.error === 'not_my_primary' || refusal.error === 'stale_epoch')
    return { kind: 'refused', reason: refusal.reason ?? refusal.error };
  return { kind: 'retry' };
}

/**
 * Whether to trim the entries the replica has applied after a round: under load in runs of
 * logTrimEntriesMin (one write transaction per run, not per batch); once it has caught up, whatever it
 * has applied.
 */
export function trimApplied(facts: Pick<SenderFacts, 'state' | 'ackedSeq' | 'firstSeq'>, caughtUp: boolean): boolean {
  const { ackedSeq, firstSeq } = facts;
  return ackedSeq !== undefined && facts.state === 'streaming' && (ackedSeq - firstSeq + 1 >= logTrimEntriesMin || (caughtUp && ackedSeq >= firstSeq));
}
