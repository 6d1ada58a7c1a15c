// The one error type the client throws. `code` is the server's error code when a node answered (every
// kvshard error body has one), or one of the client's own when none did.

import type { Answer } from './answer.js';

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

/** The JSON error body of an answer, as an error; a body that is not kvshard's becomes bad_answer. */
export function answerError(answer: Answer): KvClientError {
  let body: Record<string, unknown> | undefined;
  try {
    body = JSON.parse(answer.body.toString('utf8')) as Record<string, unknown>;
  } catch {
    body = undefined;
  }
  if (typeof body?.['error'] !== 'string') {
    return new KvClientError({
      code: 'bad_answer',
      message: `${answer.node} answered HTTP ${answer.status} without a kvshard error body`,
      status: answer.status,
      node: answer.node,
    });
  }
  const { error, message, ...details } = body;
  return new KvClientError({ code: error as string, message: String(message ?? error), status: answer.status, node: answer.node, details });
}

export function errorCode(err: unknown): string | undefined {
  const { code, cause } = (err ?? {}) as { code?: unknown; cause?: { code?: unknown } };
  return typeof code === 'string' ? code : typeof cause?.code === 'string' ? cause.code : undefined;
}
