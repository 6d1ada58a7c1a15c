// The cluster's marks on a data request: who forwarded it, under which layout, and whether it is a new
// owner's read of a key still on its previous owner. They change how a node answers, so they count only
// with the cluster token.

import type { IncomingMessage } from 'node:http';
import { BadRequestError } from './errors.js';
import { clientMapHeader, forwardedByHeader, forwardedEpochHeader, forwardedLayoutHeader, previousOwnerReadHeader, tokenHeader } from './wire.js';

export interface ForwardMarker {
  /** `<shard>/<role>` of the node that forwarded the request. */
  readonly by: string;
  /** The sender's config layoutId. */
  readonly layoutId: string;
  /** On a forwarded write: the epoch the sender knows for the target shard. */
  readonly epoch: number | undefined;
}

/** What a routing client says of the map it routed by (see clientMapHeader). */
export interface ClientMap {
  readonly layoutId: string;
  /** The epoch the client knows for the key's shard. */
  readonly epoch: number;
}

export interface InternalMarks {
  readonly forwarded: ForwardMarker | undefined;
  readonly previousOwnerRead: boolean;
  /** Set when the client routes by slot itself: this node answers 421 moved rather than forwarding. */
  readonly clientMap: ClientMap | undefined;
}

const noMarks: InternalMarks = { forwarded: undefined, previousOwnerRead: false, clientMap: undefined };
const clientMapPattern = /^([0-9a-f]{12}) ([1-9][0-9]{0,14})$/;
/** A header's first value, undefined when the request does not carry it. */
type HeaderValue = string | undefined;
/** `<shard>/<role>`, as nodes write it: anything else in the header is not from a node. */
const forwardedByPattern = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\/(primary|replica|drain)$/;
const layoutIdPattern = /^[0-9a-f]{12}$/;

/**
 * The cluster's marks among a request's headers, and whether it has a Host header. Read from rawHeaders:
 * `req.headers` would build an object of every header on each request only to look up names that
 * client requests never carry. A repeated header counts once (its first occurrence).
 *
 * The marks change how a node answers (never forward again, answer from data the config no longer
 * routes here), so they count only on requests that carry the cluster token, which nodes send with
 * every forwarded request; from anyone else they are refused, and their values never go into a reply.
 */
export function internalMarks(req: IncomingMessage, isClusterToken: (value: string) => boolean): InternalMarks {
  let by: HeaderValue;
  let layoutId: HeaderValue;
  let previousOwnerRead: HeaderValue;
  let epoch: HeaderValue;
  let token: HeaderValue;
  let map: HeaderValue;
  let host = false;
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const first = name.charCodeAt(0) | 0x20;
    if (first === 0x68 && name.length === 4) {
      host ||= name.toLowerCase() === 'host';
      continue;
    }
    // Every mark starts with "x-kv-"; skip the rest without lower-casing them.
    if (name.length < 6 || first !== 0x78) continue;
    const lower = name.toLowerCase();
    if (lower === forwardedByHeader) by ??= raw[i + 1];
    else if (lower === forwardedLayoutHeader) layoutId ??= raw[i + 1];
    else if (lower === previousOwnerReadHeader) previousOwnerRead ??= raw[i + 1];
    else if (lower === tokenHeader) token ??= raw[i + 1];
    else if (lower === forwardedEpochHeader) epoch ??= raw[i + 1];
    else if (lower === clientMapHeader) map ??= raw[i + 1];
  }
  requireHost(req, host);
  const clientMap = clientMapOf(map);
  if (by === undefined && layoutId === undefined && previousOwnerRead === undefined)
    return clientMap === undefined ? noMarks : { forwarded: undefined, previousOwnerRead: false, clientMap };
  return checkedMarks(by, layoutId, previousOwnerRead, epoch, token, isClusterToken, clientMap);
}

function requireHost(req: IncomingMessage, host: boolean): void {
  if (!host && req.httpVersionMinor === 1 && req.httpVersionMajor === 1) throw new BadRequestError('an HTTP/1.1 request needs a Host header');
}

function clientMapOf(value: HeaderValue): ClientMap | undefined {
  if (value === undefined) return undefined;
  const match = clientMapPattern.exec(value);
  if (match === null) throw new BadRequestError(`header ${clientMapHeader} must be "<layout id> <epoch>": 12 hex digits, a space and a positive integer`);
  return { layoutId: match[1]!, epoch: Number(match[2]) };
}

/** The marks of a request that carries at least one, once the token and their values are checked. */
function checkedMarks(
  by: HeaderValue,
  layoutId: HeaderValue,
  previousOwnerRead: HeaderValue,
  epoch: HeaderValue,
  token: HeaderValue,
  isClusterToken: (value: string) => boolean,
  clientMap: ClientMap | undefined,
): InternalMarks {
  const name = by !== undefined ? forwardedByHeader : layoutId !== undefined ? forwardedLayoutHeader : previousOwnerReadHeader;
  if (token === undefined || !isClusterToken(token)) {
    throw new BadRequestError(`header ${name} is internal to the cluster: it counts only with the cluster token`);
  }
  if (by === undefined || !forwardedByPattern.test(by) || (layoutId !== undefined && !layoutIdPattern.test(layoutId))) {
    throw new BadRequestError(`malformed internal headers ${forwardedByHeader} and ${forwardedLayoutHeader}`);
  }
  if (epoch !== undefined && !/^[1-9][0-9]{0,14}$/.test(epoch)) throw new BadRequestError(`malformed internal header ${forwardedEpochHeader}`);
  return {
    forwarded: { by, layoutId: layoutId ?? 'unknown', epoch: epoch === undefined ? undefined : Number(epoch) },
    previousOwnerRead: previousOwnerRead === '1',
    clientMap,
  };
}
