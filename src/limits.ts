// Every bound kvshard enforces, declared once with the reason for its value.

/** Redis Cluster's slot count: routing stays compatible with CLUSTER KEYSLOT. */
export const slotCount = 16384;

/**
 * Keys are at most 1 KiB of UTF-8. LMDB's own key limit is 1978 bytes and every stored key carries a
 * two-byte slot prefix, so 1024 leaves ample room while still fitting any sensible identifier.
 */
export const keyBytesMax = 1024;

/** Values up to 16 MiB: large enough for documents and blobs, small enough to buffer in memory once. */
export const valueBytesMax = 16 * 1024 * 1024;

/** Shards in one config. jump hash supports any count; this only stops a typo from making 10^6 shards. */
export const shardCountMax = 1024;

/** A config file larger than this is not a hand-written sharding.toml. */
export const configBytesMax = 1024 * 1024;

/** A forwarded request that takes longer than this is answered 504: the client can retry elsewhere. */
export const forwardTimeoutMs = 5_000;

/**
 * Sockets kept per peer for forwarding. Bounded so that a slow peer cannot absorb every file
 * descriptor; 64 matches the concurrency the benchmark drives through one node.
 */
export const peerSocketsMax = 64;

/** Idle keep-alive sockets are closed after this, on both the server and the client side. */
export const keepAliveIdleMs = 5_000;

/** A client that has not sent its headers within this is disconnected (slowloris bound). */
export const headersTimeoutMs = 10_000;

/** A whole request, body included, must arrive within this: 16 MiB at a few MB/s fits comfortably. */
export const requestTimeoutMs = 60_000;

/** On SIGTERM, in-flight requests get this long to finish before their sockets are closed. */
export const shutdownDrainMs = 5_000;
