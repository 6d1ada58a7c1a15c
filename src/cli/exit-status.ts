// The exit statuses every kvshard command shares, and the one error a command fails with: a stable code
// (a node's error code, the client's, or one of the command line's own) and the status it exits with.
// cli.ts prints it as one line, `kvshard: <code>: <message>`, on stderr.

/** Exit statuses, as `kvshard --help` lists them. A script tells the cases apart by these alone. */
export const exitStatus = {
  ok: 0,
  /** A negative answer: the key is absent (get, del), the replicas differ (verify). */
  no: 1,
  /** The command line or the config is wrong, or the key or value is one no node would take. */
  usage: 2,
  /** No node answered usably: unreachable, timed out, or a 5xx the client gave up on. */
  unavailable: 3,
  /** A node refused the cluster token (401). */
  unauthorized: 4,
  /** The cluster declined the request and changed nothing (failover_refused, read_only_replica, other 4xx). */
  refused: 5,
  /** The change was made, but not all of it confirmed: a switchover whose old primary did not hear of the new epoch. */
  incomplete: 6,
  /** A failure none of the above names: a bug or an I/O error; the message carries its stack. */
  internal: 70,
} as const;

export class CommandError extends Error {
  override readonly name = 'CommandError';

  constructor(
    readonly code: string,
    message: string,
    readonly exit: number,
  ) {
    super(message);
  }
}

/** A command line the command cannot run: an unknown option, a missing or extra argument, a bad option value. */
export function usageError(message: string): CommandError {
  return new CommandError('usage', message, exitStatus.usage);
}

/** Codes that say the request itself is wrong (the key, the value, the request's size): no retry can help. */
const inputCodes = new Set(['bad_request', 'payload_too_large', 'headers_too_large']);
/** The client's own codes for a call that got no usable answer (src/client/errors.ts). */
const noAnswerCodes = new Set(['unavailable', 'timeout', 'aborted', 'connection_lost', 'bad_answer']);

/** The exit status for an error `code`, and the HTTP `status` when a node answered with it. */
export function exitForError(code: string, status: number | undefined): number {
  if (code === 'not_found') return exitStatus.no;
  if (code === 'unauthorized' || status === 401) return exitStatus.unauthorized;
  if (inputCodes.has(code) || status === 400 || status === 413 || status === 414 || status === 431) return exitStatus.usage;
  if (noAnswerCodes.has(code) || status === undefined || status >= 500) return exitStatus.unavailable;
  // 408 (the node timed the request out) and 421 (nodes disagree on the layout, retries exhausted) pass with time.
  if (status === 408 || status === 421) return exitStatus.unavailable;
  return status >= 400 ? exitStatus.refused : exitStatus.unavailable;
}

/** What a 401 from a node means to the operator, and where the token comes from. */
export const tokenMismatch = "the cluster token does not match the nodes' (set KV_CLUSTER_TOKEN, token in the config, or the data dir's cluster.token)";
