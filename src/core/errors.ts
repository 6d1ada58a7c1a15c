// Operating errors: each case is one class with a stable machine code and an HTTP status. Handlers
// throw these; one place (http-api.ts) turns them into {"error": code, "message": ...} responses.

export type ErrorDetails = Record<string, unknown>;

export class KvError extends Error {
  /** Whether the connection closes after the answer: set where the rest of the request was not read. */
  closeConnection = false;
  /** Seconds a client waits before it retries, sent as Retry-After; undefined for errors not worth a retry soon. */
  retryAfterS: number | undefined;
  constructor(
    readonly code: string,
    readonly status: number,
    message: string,
    readonly details: ErrorDetails = {},
  ) {
    super(message);
    this.name = 'KvError';
  }

  toJSON(): Record<string, unknown> {
    return { error: this.code, message: this.message, ...this.details };
  }
}

/** A request parameter is missing, empty, malformed or out of bounds. */
export class BadRequestError extends KvError {
  constructor(message: string, details?: ErrorDetails) {
    super('bad_request', 400, message, details);
  }
}

/**
 * The client closed the connection or sent a malformed body while the node read it. A client's fault,
 * not a bug: answered 400 when the connection still stands, and logged as one line without a stack.
 */
export class ClientFaultError extends KvError {
  constructor(message: string) {
    super('bad_request', 400, message);
  }
}

/**
 * A bound on what the process or the connection holds was reached (request bodies, unread answers,
 * pipelined requests). Retriable: the client tries again after Retry-After. `closeConnection` where the
 * rest of the request was not read, or the client has to read before it sends more.
 */
export class OverloadedError extends KvError {
  constructor(message: string, closeConnection = false) {
    super('overloaded', 503, message, { retriable: true });
    this.closeConnection = closeConnection;
    this.retryAfterS = 1;
  }
}

/**
 * A request body that stopped arriving (bodyStallMs without a byte). The connection closes after the
 * answer, since the rest of the body may still come and would be taken for the next request.
 */
export class RequestTimeoutError extends KvError {
  constructor(message: string) {
    super('request_timeout', 408, message);
    this.closeConnection = true;
  }
}

/** A request line that names an HTTP version other than 1.x. */
export class HttpVersionError extends KvError {
  constructor() {
    super('http_version_not_supported', 505, 'only HTTP/1.0 and HTTP/1.1 are served');
    this.closeConnection = true;
  }
}

/** The key has no value. */
export class NotFoundError extends KvError {
  constructor(message: string, details?: ErrorDetails) {
    super('not_found', 404, message, details);
  }
}

/** No such path. */
export class UnknownRouteError extends KvError {
  constructor(path: string) {
    super('unknown_route', 404, `no route for ${path}`);
  }
}

/** The path exists but not for this method. */
export class MethodNotAllowedError extends KvError {
  constructor(
    method: string,
    path: string,
    readonly allowed: readonly string[],
  ) {
    super('method_not_allowed', 405, `${method} is not allowed on ${path}; use ${allowed.join(' or ')}`);
  }
}

/** Replicas serve reads only; writes go to the shard's primary. */
export class ReadOnlyReplicaError extends KvError {
  constructor(shard: string, primary: string, epoch: number) {
    super('read_only_replica', 403, `this is a read-only replica of ${shard}; send writes to its primary at ${primary} (epoch ${epoch})`, {
      shard,
      primary,
      epoch,
    });
  }
}

/**
 * A forwarded write reached a member that is not its shard's primary (any more): a failover made the
 * other member primary. The forwarding node learns the current primary and epoch from it and retries
 * there once. Distinct from wrong_shard: the key's shard is right, its primary moved.
 */
export class NotPrimaryError extends KvError {
  constructor(shard: string, primary: string, epoch: number) {
    super('not_primary', 421, `this member of ${shard} is not its primary; its primary is ${primary} (epoch ${epoch})`, {
      shard,
      primary,
      epoch,
      retriable: true,
    });
  }
}

/**
 * The shard's writes wait: a switchover is under way (the primary lets its replica catch up before it
 * hands over) or ended without word of its outcome, a restarted primary has not yet heard its epochs
 * from a majority, the primary has not heard from a majority for half a node timeout, a peer granted
 * a newer epoch whose outcome this primary has not learned, or (with a coordinator) the primary does not
 * hold its shard's key in etcd under a lease that surely lives. Retriable after Retry-After.
 */
export class WritesPausedError extends KvError {
  constructor(
    code: 'failover_in_progress' | 'failover_unsettled' | 'epoch_unconfirmed' | 'epoch_behind' | 'no_majority' | 'promotion_pending' | 'lease_expired',
    shard: string,
    why: string,
  ) {
    super(code, 503, `writes to ${shard} wait: ${why}; retry shortly`, { shard, retriable: true });
    this.retryAfterS = 1;
  }
}

/**
 * A request that only its shard's primary takes (a migration batch) reached a member that is not its
 * primary, or whose store a demotion has begun to turn into a replica's: nothing of it was stored. The
 * sender retries, by then at the primary it has learned of. Distinct from not_primary, on which a
 * forwarding node learns a new primary: this refusal comes from inside the member and names nothing new.
 */
export class NotServingPrimaryError extends KvError {
  constructor(what: string, why: string, details: ErrorDetails = {}) {
    super('not_serving_primary', 503, `this member takes no ${what}: ${why}; retry at its shard's primary`, { ...details, retriable: true });
    this.retryAfterS = 1;
  }
}

/**
 * A failover the cluster declined, changing nothing: the member is primary already, its primary is
 * unreachable without --force, it lags too far to catch up within the pause, or it holds no complete copy.
 */
export class FailoverRefusedError extends KvError {
  constructor(shard: string, why: string, details: ErrorDetails = {}) {
    super('failover_refused', 409, `no failover of ${shard}: ${why}`, { shard, ...details });
  }
}

/**
 * A failover through etcd that etcd did not answer. `changed` says whether the shard's key may have moved
 * all the same (the transaction was sent): then that member, not promoted, gives the key up again, and
 * the campaign that follows picks the primary.
 */
export class CoordinatorUnavailableError extends KvError {
  constructor(shard: string, why: string, changed: false | 'unknown') {
    super(
      'coordinator_unavailable',
      503,
      `failover of ${shard}: etcd did not answer (${why}); ` +
        (changed === false ? 'nothing changed' : "it may have taken the shard's key all the same, and then gives it up again; check with status") +
        '; retry once etcd answers',
      { shard, retriable: true, outcome: changed === false ? 'unchanged' : 'unknown' },
    );
  }
}

/**
 * A forwarded request reached a node that does not own its key: the sender and this node run different
 * configs. Retriable once both run the same one; never forwarded again, so disagreeing nodes cannot loop.
 */
export class WrongShardError extends KvError {
  constructor(message: string, details: ErrorDetails) {
    super('wrong_shard', 421, message, details);
  }
}

/**
 * A request from a client that routes by slot (it sent the x-kv-map header) reached a node that would
 * have to forward it, or a write reached a member that is not its shard's primary: the answer names
 * where to send it (`address`) and the shard as this node knows it, like Redis Cluster's MOVED. The
 * request was not applied; the client retries at `address` and refreshes its map.
 */
export class MovedError extends KvError {
  constructor(slot: number, shard: { name: string; primary: string; replica: string; epoch: number }, address: string, layoutId: string) {
    super(
      'moved',
      421,
      `slot ${slot} belongs to ${shard.name}: send this request to ${address} (primary ${shard.primary}, epoch ${shard.epoch}); refresh the cluster map`,
      {
        slot,
        shard: shard.name,
        address,
        primary: shard.primary,
        replica: shard.replica,
        epoch: shard.epoch,
        layout_id: layoutId,
        retriable: true,
      },
    );
  }
}

/** A body or value is larger than the declared limit. */
export class PayloadTooLargeError extends KvError {
  constructor(message: string) {
    super('payload_too_large', 413, message);
  }
}

/** The owner of a key could not be reached. */
export class ShardUnavailableError extends KvError {
  constructor(
    shard: string,
    address: string,
    /** Why, in a few words (ECONNREFUSED, marked down since ...). */
    readonly reason: string,
  ) {
    super('shard_unavailable', 503, `shard ${shard} at ${address} is unavailable: ${reason}`, { shard, address });
  }
}

/**
 * The connection to a key's owner broke after a write was sent: it may or may not have been applied
 * there. Like a timeout, and unlike shard_unavailable, not safe to retry blindly.
 */
export class ShardConnectionLostError extends KvError {
  constructor(shard: string, address: string, reason: string) {
    super(
      'shard_connection_lost',
      502,
      `the connection to shard ${shard} at ${address} broke before it answered (${reason}); the write may or may not have been applied`,
      {
        shard,
        address,
      },
    );
  }
}

/** The owner of a key did not answer in time. The request may or may not have been applied there. */
export class ShardTimeoutError extends KvError {
  constructor(shard: string, address: string, timeoutMs: number) {
    super('shard_timeout', 504, `shard ${shard} at ${address} did not answer within ${timeoutMs} ms`, {
      shard,
      address,
    });
  }
}

/** An internal (replication) request without the cluster secret. */
export class UnauthorizedError extends KvError {
  constructor(message = 'internal endpoints need the cluster token in the X-Kv-Token header') {
    super('unauthorized', 401, message);
  }
}

/**
 * A write was committed here, but this member lost its standing as primary before it could acknowledge
 * it (a new epoch, or no majority heard for half a node timeout): it is kept if the new primary has it,
 * else it ends up in this member's rollback file. Like replica_timeout, the body says it was committed,
 * so a client does not retry it blindly; sending it again to the primary there is now is safe for a set.
 */
export class WriteOutcomeUnknownError extends KvError {
  constructor(shard: string, seq: number, why: string) {
    super('write_outcome_unknown', 503, `the write (seq ${seq}) was committed on this member, but ${why}, so it is not acknowledged`, {
      shard,
      seq,
      committed_on_primary: true,
      retriable: true,
    });
    this.retryAfterS = 1;
  }
}

/**
 * `ack=replica` waited its bound and the replica had not applied the write. The write is committed and
 * durable on the primary all the same; the body says so, so a client does not retry it blindly.
 */
export class ReplicaTimeoutError extends KvError {
  constructor(seq: number, timeoutMs: number) {
    super(
      'replica_timeout',
      504,
      `the write (seq ${seq}) is committed and durable on the primary, but the replica did not apply it within ${timeoutMs} ms; it will be replicated when the replica catches up`,
      { seq, committed_on_primary: true },
    );
  }
}

/**
 * `ack=replica` when the primary already knows its replica cannot take the write (unreachable, or
 * refusing the primary's data): answered at once instead of after the full wait. The write is committed
 * and durable on the primary all the same.
 */
export class ReplicaUnavailableError extends KvError {
  constructor(seq: number, why: string) {
    super(
      'replica_unavailable',
      503,
      `the write (seq ${seq}) is committed and durable on the primary, but the replica cannot take it now (${why}); it will be replicated when the replica is back`,
      { seq, committed_on_primary: true },
    );
  }
}

/**
 * The shard's primary is not serving its keys yet: its data dir is new and it waits for its replica to
 * say whether the shard has data, or it is copying that data from the replica. Retriable.
 */
export class PrimaryRecoveringError extends KvError {
  /** `state`: what the primary does meanwhile, as its /status names it (waiting_for_replica, ...). */
  constructor(shard: string, state: string) {
    super('primary_recovering', 503, `the primary of ${shard} is ${state.replaceAll('_', ' ')}; retry shortly`, { shard, retriable: true });
  }
}

/**
 * A node that joined the cluster has not yet learned from its peers whether keys are moving to it, so it
 * cannot tell a missing key from one still on its previous owner. Retriable within moments.
 */
export class LayoutPendingError extends KvError {
  constructor(shard: string) {
    super('layout_pending', 503, `${shard} is still learning the cluster layout from its peers; retry shortly`, { shard, retriable: true });
  }
}

/** An internal request from a node running another layout (a migration batch for a layout this node does not run). */
export class LayoutMismatchError extends KvError {
  constructor(message: string, details: ErrorDetails) {
    super('layout_mismatch', 409, message, details);
  }
}

/** An error in a few words for a log line: its code when it has one (ECONNREFUSED), else its message. */
export function describeError(err: unknown): string {
  const { code, message } = (err ?? {}) as { code?: string; message?: string };
  return code ?? message ?? String(err);
}
