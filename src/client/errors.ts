// The one error type the client throws. `code` is the server's error code when a node answered (every
// kvshard error body has one), or one of the client's own when none did.

/** Codes the client gives when no node's answer gave one. */
export type ClientOnlyCode =
  /** No node could be reached (connections refused or failing) before the deadline or the retries ran out. */
  | 'unavailable'
  /** The call's deadline (timeoutMs) passed; a write may or may not have been applied. */
  | 'timeout'
  /** The caller's AbortSignal fired; a write may or may not have been applied. */
  | 'aborted'
  /** The connection broke after a request was sent, and the call gave up: a write may or may not have been applied. */
  | 'connection_lost'
  /** A node answered something that is not kvshard's (no JSON error body, a map of an unknown version). */
  | 'bad_answer';

export interface KvClientErrorInit {
  readonly code: string;
  readonly message: string;
  /** The HTTP status, when a node answered. */
  readonly status?: number;
  /** The node (host:port) that answered or was tried last. */
  readonly node?: string;
  /** The rest of the server's error body (shard, slot, committed_on_primary, ...). */
  readonly details?: Record<string, unknown>;
  readonly cause?: unknown;
}

export class KvClientError extends Error {
  override readonly name = 'KvClientError';
  /** The server's error code (not_found, bad_request, replica_timeout, ...) or a ClientOnlyCode. */
  readonly code: string;
  readonly status: number | undefined;
  readonly node: string | undefined;
  readonly details: Record<string, unknown>;

  constructor(init: KvClientErrorInit) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.code = init.code;
    this.status = init.status;
    this.node = init.node;
    this.details = init.details ?? {};
  }

  /**
   * Whether a write is known to be committed on its primary although the call failed (replica_timeout,
   * replica_unavailable with ack=replica): retrying it is not needed.
   */
  get committed(): boolean {
    return this.details['committed_on_primary'] === true;
  }
}
