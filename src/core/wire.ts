// Header names of the cluster's own protocol, shared by the nodes' client and server sides.

/** The cluster secret, on every internal request and on every request one node forwards to another. */
export const tokenHeader = 'x-kv-token';

/** Marks a request forwarded by another node (`<shard>/<role>`), so it is never forwarded again. */
export const forwardedByHeader = 'x-kv-forwarded-by';
/** The forwarding node's layout id, so a disagreement between configs is named. */
export const forwardedLayoutHeader = 'x-kv-layout';
/**
 * Marks a read sent by a key's new owner to its previous owner during a migration: the previous owner
 * answers from its own data although its config no longer assigns it the key.
 */
export const previousOwnerReadHeader = 'x-kv-previous-owner-read';

/** The epoch the forwarding node knows for the target shard, on forwarded writes: a primary that learns of a newer one from it stops taking writes. */
export const forwardedEpochHeader = 'x-kv-epoch';

/**
 * A routing client's view of the cluster, on data requests: `<layout id> <epoch>`, the layout id of the
 * map it routed by and the epoch it knows for the key's shard. A node that would have to forward such a
 * request, or that is not the key's primary for a write, answers 421 `moved` naming where to send it,
 * instead of forwarding it. Any client may send it: it asks for less work, never for more trust.
 */
export const clientMapHeader = 'x-kv-map';
