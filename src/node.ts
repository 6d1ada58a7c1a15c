// One kvshard process: a primary or a replica of one shard. Owns its store, forwarder, replication
// task and HTTP server, and closes them in order: stop accepting, drain in-flight requests and
// replication (bounded), then close LMDB.

import type { Server } from 'node:http';
import { join } from 'node:path';
import type { Router } from 'express';
import { ConfigError, parseAddress, type Config, type ShardConfig } from './config.js';
import { Forwarder } from './forwarder.js';
import { createHttpServer } from './http-api.js';
import { shutdownDrainMs } from './limits.js';
import { replicaRouter, type ReplicaProgress } from './replication-receiver.js';
import { ReplicationSender } from './replication-sender.js';
import { primaryRole, replicaRole, type RoleContext, type RoleName } from './roles.js';
import { Store } from './store.js';

export interface NodeOptions {
  readonly config: Config;
  readonly shard: ShardConfig;
  readonly role: RoleName;
  readonly dataDir: string;
  /** The cluster secret for internal endpoints. */
  readonly token: string;
  readonly log: (message: string) => void;
}

/** What /status adds for each role. */
function primaryStatus(store: Store, sender: ReplicationSender, config: Config): () => Record<string, unknown> {
  const log = store.log!;
  return () => ({
    keys: store.count(),
    topology: config.topologyId,
    dataset_id: store.datasetId(),
    last_seq: log.lastSeq(),
    replication: sender.status(),
    log: {
      first_seq: log.firstSeq(),
      last_seq: log.lastSeq(),
      entries: log.lastSeq() - log.firstSeq() + 1,
      bytes: log.bytes(),
      retention_bytes: config.logRetentionBytes,
    },
  });
}

function replicaStatus(store: Store, progress: ReplicaProgress, config: Config): () => Record<string, unknown> {
  return () => {
    const state = store.replicaState();
    const lagEntries = Math.max(0, progress.primarySeq - state.appliedSeq);
    return {
      keys: store.count(),
      topology: config.topologyId,
      dataset_id: state.datasetId ?? null,
      applied_seq: state.appliedSeq,
      primary_seq: progress.primarySeq,
      lag_entries: lagEntries,
      lag_seconds: lagEntries === 0 ? 0 : progress.lastAppliedTs ? Math.max(0, (Date.now() - progress.lastAppliedTs) / 1000) : null,
      in_sync: store.replicaInSync(),
      resyncing: state.resyncId !== undefined,
      resyncs: progress.resyncs,
      last_contact_ms_ago: progress.lastContactAt ? Date.now() - progress.lastContactAt : null,
    };
  };
}

/**
 * Refuses to start when the config moved slots away from this shard while it still holds keys in them:
 * those keys would become unreachable. Moving them (online resize) is not implemented yet, so the safe
 * answer is to keep the previous sharding.toml. A changed layout that strands nothing is recorded.
 */
async function checkTopology(store: Store, config: Config, shard: ShardConfig): Promise<void> {
  const previous = store.topology();
  const current = { topologyId: config.topologyId, shardCount: config.shards.length, idx: shard.idx };
  if (previous?.topologyId === current.topologyId) return;
  if (previous && (previous.shardCount !== current.shardCount || previous.idx !== current.idx)) {
    const stranded = store.countKeysOutside((slot) => config.slotOwners[slot] === shard.idx);
    if (stranded > 0) {
      throw new ConfigError([
        `${config.file}: shards: this config gives ${stranded} keys held by ${shard.name} (${store.path}) to other shards ` +
          `(the data was written with ${previous.shardCount} shards, the config has ${current.shardCount}); ` +
          'moving keys between shards (online resize) is not supported yet, so start with the previous sharding.toml',
      ]);
    }
  }
  await store.recordTopology(current);
}

export class KvNode {
  private closing: Promise<void> | undefined;

  private constructor(
    readonly options: NodeOptions,
    readonly address: string,
    private readonly store: Store,
    private readonly forwarder: Forwarder,
    private readonly sender: ReplicationSender | undefined,
    private readonly server: Server,
  ) {}

  static async start(options: NodeOptions): Promise<KvNode> {
    const { config, shard, role, dataDir, log } = options;
    const address = role === 'primary' ? shard.address : shard.replica;
    const listen = parseAddress(address)!;
    const store = new Store({ path: join(dataDir, `${shard.name}-${role}`), replicationLog: role === 'primary' });
    try {
      await checkTopology(store, config, shard);
    } catch (err) {
      await store.close();
      throw err;
    }
    const forwarder = new Forwarder({ self: `${shard.name}/${role}`, topologyId: config.topologyId });
    let sender: ReplicationSender | undefined;
    let status: () => Record<string, unknown>;
    let internalRoutes: Router | undefined;
    if (role === 'primary') {
      sender = new ReplicationSender({
        store,
        log: store.log!,
        replicaAddress: shard.replica,
        token: options.token,
        logRetentionBytes: config.logRetentionBytes,
        logger: log,
      });
      status = primaryStatus(store, sender, config);
    } else {
      const progress: ReplicaProgress = { primarySeq: store.replicaState().appliedSeq, lastContactAt: 0, lastAppliedTs: 0, resyncs: 0 };
      internalRoutes = replicaRouter(store, progress, log);
      status = replicaStatus(store, progress, config);
    }
    const ctx: RoleContext = { config, shard, store, forwarder, sender };
    const server = createHttpServer({
      role: role === 'primary' ? primaryRole(ctx) : replicaRole(ctx),
      info: { shard: shard.name, role, address },
      status,
      log,
      token: options.token,
      store,
      internalRoutes,
    });
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(listen.port, listen.host, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      await forwarder.close();
      await store.close();
      throw err;
    }
    sender?.start();
    log(`${shard.name} ${role} listening on ${address}, data in ${store.path}, topology ${config.topologyId}`);
    return new KvNode(options, address, store, forwarder, sender, server);
  }

  /** Stops accepting, lets in-flight requests and replication finish (bounded), then closes LMDB. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    const deadline = new Promise<void>((resolve) => setTimeout(resolve, shutdownDrainMs).unref());
    await Promise.race([closed, deadline]);
    this.server.closeAllConnections();
    await this.sender?.close(shutdownDrainMs);
    await this.forwarder.close();
    await this.store.close();
    this.options.log(`${this.options.shard.name} ${this.options.role} stopped`);
  }
}
