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

/**
 * The request line and headers together, node's own default made explicit: it is also the cap on a value
 * given in the URL (use POST for larger ones). Larger heads are answered 431.
 */
export const requestHeadBytesMax = 16 * 1024;

/** Parameter names are echoed in error messages cut to this many characters. */
export const parameterNameCharsMax = 64;

/**
 * Bytes of client request bodies one process holds at once: four maximal values. Without it, a dozen
 * concurrent 16 MiB uploads took a node from 160 MB to 583 MB resident. Past it, uploads get 503
 * overloaded before more is read. Node-to-node bodies (replication, migration) are not counted: they
 * have bounds of their own and are never refused for client load.
 */
export const bodyBytesInFlightMax = 4 * valueBytesMax;

/**
 * Answers a process holds that clients have not read yet. Node's server keeps every answer to requests
 * pipelined on one connection in memory until the client reads the ones before it, and a single 64 KiB
 * write can carry a thousand GETs of a 16 MiB value. Large answers (largeReplyBytesMin and up) count
 * against one budget per process, and past it a GET gets 503 overloaded; a connection whose queued
 * answers pass connectionUnreadBytesMax gets 503 overloaded and is closed, as Redis closes a client
 * whose output buffer passes its hard limit.
 */
export const replyBytesUnsentMax = 8 * valueBytesMax;
export const largeReplyBytesMin = 256 * 1024;
export const connectionUnreadBytesMax = 1024 * 1024;

/**
 * Open connections per process: clients, peers and replication together. Well under the file
 * descriptors a process gets (LMDB and logs need some), so that idle connections cannot exhaust them;
 * past it, new connections are closed at once.
 */
export const connectionsMax = 4_096;

/** Requests pipelined on one connection wait behind the one in progress; more than this are refused. */
export const pipelinedRequestsMax = 128;

/** Room for headers and a JSON envelope around the largest value, in a forwarded request's reply. */
export const forwardReplyBytesMax = valueBytesMax + 64 * 1024;

/**
 * A reply to a node-to-node request that carries no data (a replication or migration acknowledgement,
 * a health check, a replica's state) is a short JSON object; a longer one is not from kvshard.
 */
export const internalReplyBytesMax = 64 * 1024;

/**
 * A refused client body is still read and discarded up to this many bytes, so the client receives the 413
 * instead of a reset connection; past it the connection is closed.
 */
export const discardBytesMax = 64 * 1024 * 1024;

/** A forwarded request that takes longer than this is answered 504: the client can retry elsewhere. */
export const forwardTimeoutMs = 5_000;

/**
 * A forwarded value stays in the URL while the URL is at most this long: short values are forwarded
 * as they came, and a body costs the owner a body read. A longer one goes in a POST body, since
 * percent-encoding can triple a value that fit the client's request head (requestHeadBytesMax) and the
 * owner would refuse the forwarded request as too large.
 */
export const forwardUrlCharsMax = 8 * 1024;

/**
 * Connecting to a peer gets its own, shorter bound: a connection on a LAN or loopback is set up in well
 * under a millisecond, so a second means the host is unreachable (a black hole sends no refusal).
 */
export const peerConnectTimeoutMs = 1_000;

/**
 * A peer that just failed (refused, unreachable, timed out) is treated as down: reads go to the owner's
 * other member at once and writes get 503 at once, instead of each paying the timeout. It is probed
 * (GET /health, with this timeout) every peerProbeIntervalMs until it answers, then used again.
 */
export const peerProbeIntervalMs = 500;
export const peerProbeTimeoutMs = 1_000;

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

/**
 * How often the server checks headersTimeoutMs and requestTimeoutMs. Node checks every 30 s by default,
 * which lets a slow client overstay each bound by up to 30 s.
 */
export const connectionsCheckIntervalMs = 1_000;

/**
 * A request body that sends no byte for this long is answered 408 and its connection closed, so a
 * client cannot hold a connection and its share of the body budget by going silent.
 */
export const bodyStallMs = 20_000;

/**
 * After an answer that closes its connection while the client may still be sending (an upload refused
 * part way, requests pipelined past the bound), the socket reads and drops what still arrives for at
 * most this long before it closes, so that the answer is not lost to a reset.
 */
export const closeLingerMs = 5_000;

/** Client faults (a body cut off, a malformed request) logged per second; past it, one line counts the rest. */
export const clientFaultLogLinesPerS = 20;

/** On SIGTERM, in-flight requests get this long to finish before their sockets are closed. */
export const shutdownDrainMs = 5_000;
/** While draining, connections whose requests were answered before the drain began are closed this often. */
export const shutdownIdleSweepMs = 50;

/** How long a process that finds the data dir lock taken waits for the holder to say who it is. */
export const lockHolderAnswerTimeoutMs = 2_000;
/** The lock holder's answer is one short line; anything longer is not a kvshard lock. */
export const lockHolderAnswerBytesMax = 1_024;

/** Admin calls are one-off reads: a short timeout, a bounded reply (a per-slot digest of 256 slots fits). */
export const adminTimeoutMs = 10_000;
export const adminReplyBytesMax = 4 * 1024 * 1024;

/** Short secrets are guessable; 16 characters is the least a generated token has. */
export const tokenCharsMin = 16;

/**
 * A replication batch carries at most this many log entries and, past its first entry, at most this many
 * bytes (raft's Inflights idea: a bounded amount in flight). One entry alone may exceed the byte bound,
 * since a single value may be up to valueBytesMax.
 */
export const replicationBatchEntriesMax = 2_000;
export const replicationBatchBytesMax = 4 * 1024 * 1024;

/** Resync snapshot chunks are bounded the same way. */
export const resyncChunkEntriesMax = 2_000;
export const resyncChunkBytesMax = 4 * 1024 * 1024;

/**
 * A primary whose data dir is new asks its replica what it holds before serving, retrying with this
 * backoff while the replica does not answer; capped low, since a new cluster's replicas start moments
 * after their primaries. The wait is logged at most once per recoveryWaitLogEveryMs.
 */
export const recoveryBackoffFirstMs = 50;
/**
 * A primary with data of its own asks its replica this long before it serves unconfirmed (writes wait
 * meanwhile): long enough for a replica started beside it (launch.sh starts each primary moments before
 * its replica), short enough that a dead replica does not keep the shard from taking writes.
 */
export const recoveryConfirmWaitMs = 5_000;
export const recoveryBackoffMaxMs = 1_000;
/** A primary asks its replica's state over one socket: it asks once at a time. */
export const recoverySocketsMax = 1;
export const recoveryWaitLogEveryMs = 30_000;

/**
 * Copies of a primary's own data kept under <data dir>/replaced/ when it rebuilds from a replica that
 * holds more: each is a full copy of the data, so only the newest few are kept.
 */
export const replacedCopiesMax = 3;

/**
 * A snapshot a primary copies from its replica is ended when no chunk was asked for in this long: a
 * primary that died mid-copy must not pin the replica's LMDB read transaction (and its old pages).
 */
export const snapshotIdleMs = 30_000;

/**
 * A replica reports itself in sync only while its primary has been heard from within this bound: the
 * primary sends at least a heartbeat every replicationHeartbeatMs, so a few missed ones mean it is gone.
 */
export const primarySilenceMaxMs = 3_000;

/** The largest internal request body: one full batch, or one maximal value with its key and framing. */
export const internalBodyBytesMax = valueBytesMax + keyBytesMax + 64 * 1024;

/** Default bound on the bytes of replication log kept for a lagging replica (sharding.toml can change it). */
export const logRetentionBytesDefault = 256 * 1024 * 1024;

/** Entries trimmed from the log per LMDB transaction, so trimming never holds the write lock for long. */
export const logTrimEntriesMax = 10_000;

/** Under load, applied entries are trimmed once this many have gathered: one trim transaction per run. */
export const logTrimEntriesMin = 1_000;

/** Timeout of one replication request; a replica slower than this is treated as unreachable and retried. */
export const replicationRequestTimeoutMs = 10_000;

/** Sockets from a primary to its replica: the sender sends one request at a time; one spare for reconnecting. */
export const replicationSocketsMax = 2;

/** A closing sender checks this often whether its replica has caught up (within shutdownDrainMs). */
export const replicationClosePollMs = 10;

/** Retry backoff after a failed replication request: doubles from the first value up to the cap. */
export const replicationBackoffFirstMs = 50;
export const replicationBackoffMaxMs = 2_000;

/**
 * With fewer than this many entries pending, the sender waits replicationLingerMs for more before it
 * sends: a few ms of extra lag (the target is p99 under 200 ms) for several times fewer round trips.
 */
export const replicationLingerEntriesMin = 256;
export const replicationLingerMs = 5;

/** An idle primary contacts its replica this often, so lag and reachability stay current. */
export const replicationHeartbeatMs = 500;

/** How long `ack=replica` waits for the replica to apply a write before answering 504. */
export const replicaAckTimeoutMs = 5_000;

/** Requests waiting for `ack=replica` at once; more are refused (503) rather than queued without end. */
export const replicaAckWaitersMax = 10_000;

/**
 * The read cache keeps at most this many values of at most readCacheValueBytesMax each: 4 MiB at the
 * very most, small beside the RSS bound, and enough for a hot working set of small values.
 */
export const readCacheEntriesMax = 4_096;
export const readCacheValueBytesMax = 1_024;

/**
 * A migration batch carries at most this many keys (sharding.toml's [migration] batch_keys, default
 * below) and, past its first key, at most migrationBatchBytesMax bytes; it is stored in one transaction.
 */
export const migrationBatchKeysDefault = 1_000;
export const migrationBatchKeysMax = 10_000;
export const migrationBatchBytesMax = 4 * 1024 * 1024;

/** Timeout of one migration request or layout exchange; slower peers are retried with backoff. */
export const migrationRequestTimeoutMs = 10_000;

/** Sockets of one migration sender: it sends one batch at a time; one spare for reconnecting. */
export const migrationSocketsMax = 2;

/** A drain checks this often whether its migration has finished, to exit once it has. */
export const migrationFinishedPollMs = 100;

/** Retry backoff of migration senders and layout announcements: doubles up to the cap. */
export const migrationBackoffFirstMs = 50;
export const migrationBackoffMaxMs = 2_000;

/** A node tells each peer its layout; an unreachable peer is retried this many times (about a minute). */
export const layoutAnnounceAttemptsMax = 40;

/** A node that refuses data requests because of a newer layout asks its peers this often whether it still must. */
export const layoutRecheckMs = 2_000;

/**
 * `node_timeout_ms` (sharding.toml): how long a node may go unheard before a primary without a majority
 * stops acknowledging writes (after half of it) and a forced promotion over a silent primary may be
 * granted (after all of it). Redis Cluster's cluster-node-timeout, shorter for a store on one host.
 */
export const nodeTimeoutMsDefault = 5_000;
export const nodeTimeoutMsMin = 500;
export const nodeTimeoutMsMax = 600_000;

/**
 * Every node exchanges epochs with every peer (one loop per peer) this many times per node timeout, so
 * a primary that hears from a majority does so several times within half a node timeout; each exchange
 * has the same fraction as its timeout, so one silent peer never delays the others.
 */
export const heartbeatsPerNodeTimeout = 5;

/** The timeout of each promotion grant request (one per node, all at once). */
export const grantRequestTimeoutMs = 2_000;

/** Sockets for layout exchanges: a round asks every peer at once, a few at a time is enough for their short bodies. */
export const layoutSocketsMax = 4;

/** Distinct untrusted senders of layout news logged at most (a bound on the set that remembers them). */
export const untrustedLoggedMax = 64;

/** The largest layout-exchange body: a full shard list of shardCountMax entries. */
export const layoutBodyBytesMax = 512 * 1024;

/**
 * How long a switchover holds the primary's writes at most: the replica catches up within
 * failoverCatchUpMs or the switchover is called off; should the command die, the pause ends by itself.
 */
export const failoverPauseMs = 5_000;

/** How long a switchover waits for the replica to apply the primary's last write before it gives up. */
export const failoverCatchUpMs = 2_000;

/** The timeout of each request a failover sends (pause, resume, and telling every node its epoch). */
export const failoverRequestTimeoutMs = 2_000;

/** A node's log file rolls to the next once it holds this many bytes. */
export const logFileBytesMax = 10 * 1024 * 1024;

/** Log files a node keeps, the one it writes included: at most logFilesKept × logFileBytesMax on disk. */
export const logFilesKept = 5;

/** The timeout of each request the dashboard's node sends to a member for its state. */
export const dashboardFetchTimeoutMs = 800;

/** How often the dashboard's node samples every member for the request-rate and latency sparklines. */
export const dashboardSampleMs = 2_000;

/** Samples kept per member for the sparklines (two minutes at dashboardSampleMs). */
export const dashboardSamplesMax = 60;

/** The dashboard's node samples its members only this long after the page last asked, not forever. */
export const dashboardIdleMs = 60_000;

/**
 * `[coordinator] lease_ttl_ms`: how long a silent primary keeps its shard when etcd decides who is
 * primary. etcd grants leases in whole seconds, and 2 s is the least it grants. Shorter fails over
 * sooner; longer rides out slower networks, pauses and etcd elections.
 */
export const leaseTtlMsDefault = 5_000;
export const leaseTtlMsMin = 2_000;
export const leaseTtlMsMax = 600_000;

/**
 * `[coordinator] max_lag_on_failover`: a replica further behind than this many log entries at its last
 * contact with its primary does not campaign for a vacant shard (Patroni's maximum_lag_on_failover):
 * what it lacks would go to the old primary's rollback file rather than be served.
 */
export const maxLagOnFailoverDefault = 100;
export const maxLagOnFailoverMax = 1_000_000_000;

/** etcd endpoints a config may list. */
export const etcdEndpointsMax = 16;

/** The timeout of each call to etcd: well under the shortest lease, so a renewal can be retried in time. */
export const etcdCallTimeoutMs = 1_000;
