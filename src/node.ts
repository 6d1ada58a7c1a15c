// One kvshard process: a primary or a replica of one shard. Owns its store, forwarder, replication
// task and HTTP server, and closes them in order: stop accepting, drain in-flight requests and
// replication (bounded), then close LMDB.

import { existsSync, mkdirSync, renameSync } from 'node:fs';
import type { Server, ServerResponse } from 'node:http';
import { join } from 'node:path';
import express, { type Router } from 'express';
import { ConfigError, layoutRecord, parseAddress, type Config, type LayoutRecord, type ShardConfig } from './config.js';
import { TopologyMismatchError } from './errors.js';
import { Forwarder } from './forwarder.js';
import { createHttpServer, sendJson, type BodyRequest } from './http-api.js';
import { ClusterView, LayoutSync, layoutRouter, type LayoutAnswer } from './layout-sync.js';
import { internalBodyBytesMax, shutdownDrainMs } from './limits.js';
import { decodeMigrate, Migration, migratePath } from './migration.js';
import { replicaRouter, type ReplicaProgress } from './replication-receiver.js';
import { ReplicationSender } from './replication-sender.js';
import { drainRole, primaryRole, replicaRole, type RoleContext, type RoleName } from './roles.js';
import { Store, type MigrationRecord } from './store.js';

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
/** Layout and migration state, for /status. */
function layoutStatus(view: ClusterView): Record<string, unknown> {
  return {
    layout: { decided: view.decided, refusing: view.refusal() ?? null },
    migration: view.migration?.status() ?? null,
  };
}

function primaryStatus(store: Store, sender: ReplicationSender, config: Config, view: ClusterView): () => Record<string, unknown> {
  const log = store.log!;
  return () => ({
    keys: store.count(),
    topology: config.topologyId,
    ...layoutStatus(view),
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

function replicaStatus(store: Store, progress: ReplicaProgress, config: Config, view: ClusterView): () => Record<string, unknown> {
  return () => {
    const state = store.replicaState();
    const lagEntries = Math.max(0, progress.primarySeq - state.appliedSeq);
    return {
      keys: store.count(),
      topology: config.topologyId,
      layout: { refusing: view.refusal() ?? null, primary_migrating: view.primaryMigrating ?? null },
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

interface LayoutStart {
  /** False for a primary just added, which learns from its peers whether keys move to it. */
  readonly decided: boolean;
  /** The migration under way (or the last one, finished), if any. */
  readonly record: MigrationRecord | undefined;
}

function newMigration(previous: LayoutRecord, config: Config): MigrationRecord {
  return { previous, topologyId: config.topologyId, startedAt: Date.now(), keysSent: 0, keysReceived: 0 };
}

/**
 * Compares the layout the store last ran with to the config's. A primary (or a drain) whose layout
 * changed records a migration from the old layout before it serves anything; a migration still under
 * way must finish before the layout may change again.
 */
async function prepareLayout(store: Store, config: Config, name: string, role: RoleName): Promise<LayoutStart> {
  const current = layoutRecord(config);
  const stored = store.topology();
  const existing = store.migration();
  if (existing && existing.finishedAt === undefined) {
    if (existing.topologyId !== config.topologyId) {
      throw new ConfigError([
        `${config.file}: shards: ${name} (${store.path}) is still moving keys from topology ${existing.previous.topologyId} to ` +
          `${existing.topologyId}, and this config is a third layout (${config.topologyId}); start with the config of ` +
          `${existing.topologyId} until its /status shows the migration done, then change the layout again`,
      ]);
    }
    return { decided: true, record: existing };
  }
  if (stored && !stored.shards && stored.topologyId !== config.topologyId) {
    throw new ConfigError([`${config.file}: shards: ${store.path} was written by a kvshard without online resize; start it with its old config`]);
  }
  if (role === 'drain') {
    if (!stored?.shards?.some((s) => s.name === name)) {
      throw new ConfigError([`${store.path}: holds no layout that names ${name}: there is nothing to drain`]);
    }
    const record = newMigration(stored, config);
    await store.recordTopology(current, record);
    return { decided: true, record };
  }
  if (!stored) {
    if (role === 'replica' || config.shards.length === 1) {
      await store.recordTopology(current);
      return { decided: true, record: undefined };
    }
    return { decided: false, record: undefined };
  }
  if (stored.topologyId === config.topologyId || role === 'replica') {
    // Also upgrades a record without the shard list (written before online resize existed).
    if (stored.topologyId !== config.topologyId || !stored.shards) await store.recordTopology(current);
    return { decided: true, record: existing };
  }
  const record = newMigration(stored as LayoutRecord, config);
  await store.recordTopology(current, record);
  return { decided: true, record };
}

export class KvNode {
  private closing: Promise<void> | undefined;

  private constructor(
    readonly options: NodeOptions,
    readonly address: string,
    private readonly store: Store,
    private readonly forwarder: Forwarder,
    private readonly sender: ReplicationSender | undefined,
    private readonly view: ClusterView,
    private readonly sync: LayoutSync,
    private readonly server: Server,
  ) {}

  static async start(options: NodeOptions): Promise<KvNode> {
    const { config, shard, role, dataDir, log } = options;
    const address = role === 'replica' ? shard.replica : shard.address;
    const listen = parseAddress(address)!;
    const store = new Store({ path: join(dataDir, `${shard.name}-${role === 'replica' ? 'replica' : 'primary'}`), replicationLog: role !== 'replica' });
    let start: LayoutStart;
    try {
      start = await prepareLayout(store, config, shard.name, role);
    } catch (err) {
      await store.close();
      throw err;
    }
    const ownLayout = role === 'drain' ? { ...start.record!.previous, topologyId: config.topologyId } : layoutRecord(config);
    const view = new ClusterView(config, ownLayout, `${shard.name}/${role}`, start.decided, log, () => store.count());
    const forwarder = new Forwarder({ self: `${shard.name}/${role}`, topologyId: config.topologyId });
    let sender: ReplicationSender | undefined;
    const onCommit = () => sender?.notify();
    const migrationOf = (record: MigrationRecord) =>
      new Migration({ store, config, self: shard.name, record, token: options.token, log, onCommit });
    if (start.record) view.migration = migrationOf(start.record);
    // A primary just added learns from its peers whether keys move to it (see layout-sync.ts).
    const learner = start.decided ? undefined : new LayoutLearner(view, store, config, log, (record) => migrationOf(record));
    let status: () => Record<string, unknown>;
    const internalRoutes = express.Router();
    internalRoutes.use(layoutRouter(view));
    if (role === 'primary') {
      sender = new ReplicationSender({
        store,
        log: store.log!,
        replicaAddress: shard.replica,
        token: options.token,
        logRetentionBytes: config.logRetentionBytes,
        logger: log,
        topologyId: config.topologyId,
        migrating: () => !view.decided || view.migration?.active() === true,
      });
      status = primaryStatus(store, sender, config, view);
    } else if (role === 'drain') {
      status = () => ({ keys: store.count(), topology: config.topologyId, ...layoutStatus(view) });
    } else {
      const progress: ReplicaProgress = { primarySeq: store.replicaState().appliedSeq, lastContactAt: 0, lastAppliedTs: 0, resyncs: 0 };
      internalRoutes.use(replicaRouter(store, progress, view, log));
      status = replicaStatus(store, progress, config, view);
    }
    if (role !== 'replica') internalRoutes.use(migrateRouter(view, learner));
    const ctx: RoleContext = { config, shard, store, forwarder, sender, view };
    const server = createHttpServer({
      role: role === 'primary' ? primaryRole(ctx) : role === 'drain' ? drainRole(ctx) : replicaRole(ctx),
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
    const sync = new LayoutSync({ view, self: address, token: options.token, log, onAnswer: (peer, peerRole, answer) => learner?.onAnswer(peer, peerRole, answer, sync) });
    sync.announce();
    // A primary still learning its layout asks again whenever a peer starts (its first round may have
    // run out of attempts while the peers were down).
    if (!view.decided) view.onPeerAnnounced = () => (view.decided ? undefined : sync.announceIfIdle());
    sender?.start();
    view.migration?.start();
    log(`${shard.name} ${role} listening on ${address}, data in ${store.path}, topology ${config.topologyId}`);
    return new KvNode(options, address, store, forwarder, sender, view, sync, server);
  }

  /** The shard `name` as the primary data dir in `dataDir` last knew it, for a drain. */
  static async drainedShard(dataDir: string, name: string): Promise<ShardConfig> {
    const path = join(dataDir, `${name}-primary`);
    if (!existsSync(path)) throw new ConfigError([`${path}: no such data dir: there is nothing of ${name} to drain`]);
    const store = new Store({ path, replicationLog: true });
    try {
      const migration = store.migration();
      const layout = migration && migration.finishedAt === undefined ? migration.previous : store.topology();
      const shard = layout?.shards?.find((s) => s.name === name);
      if (!shard) throw new ConfigError([`${path}: holds no layout that names ${name}: there is nothing to drain`]);
      return shard;
    } finally {
      await store.close();
    }
  }

  /** Moves a drained shard's data dirs under `dataDir`/retired/ (kept, not deleted); returns where. */
  static retire(dataDir: string, name: string): string {
    const retired = join(dataDir, 'retired', `${name}-${new Date().toISOString().replace(/[:.]/g, '-')}`);
    mkdirSync(retired, { recursive: true });
    for (const role of ['primary', 'replica']) {
      const path = join(dataDir, `${name}-${role}`);
      if (existsSync(path)) renameSync(path, join(retired, `${name}-${role}`));
    }
    return retired;
  }

  /** Resolves true once this node's migration has finished (a drain waits for this), false if closed first. */
  async migrationFinished(): Promise<boolean> {
    return (await this.view.migration?.finished()) ?? true;
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
    await this.sync.close();
    await this.view.migration?.close();
    await this.sender?.close(shutdownDrainMs);
    await this.forwarder.close();
    await this.store.close();
    this.options.log(`${this.options.shard.name} ${this.options.role} stopped`);
  }
}

/**
 * A primary just added to the cluster, with no layout of its own: decides from its peers' answers
 * whether keys move to it (and from which layout), then records that and starts the migration.
 */
class LayoutLearner {
  private readonly emptyPeers = new Set<string>();
  private deciding: Promise<void> | undefined;

  constructor(
    private readonly view: ClusterView,
    private readonly store: Store,
    private readonly config: Config,
    private readonly log: (message: string) => void,
    private readonly migrationOf: (record: MigrationRecord) => Migration,
  ) {}

  async onAnswer(peer: ShardConfig, role: 'primary' | 'replica', answer: LayoutAnswer, sync: LayoutSync): Promise<void> {
    if (this.view.decided || role !== 'primary') return;
    const mine = this.config.topologyId;
    if (answer.layout.topologyId === mine && answer.migratingFrom) return this.decide(answer.migratingFrom, `${peer.name} migrates from it`, sync);
    if (answer.layout.topologyId === mine && answer.decided) return this.decide(undefined, `${peer.name} runs this layout with no migration`, sync);
    // A peer on another layout proves nothing by itself: it may be an old node not restarted yet (the first
    // old node restarted with this layout records the migration and tells), or a newer one. Only a peer
    // that is new too, or holds no keys, has nothing that could move here.
    if (answer.decided && answer.keys > 0) return;
    this.emptyPeers.add(peer.name);
    if (this.emptyPeers.size === this.config.shards.length - 1) return this.decide(undefined, 'no other primary holds keys: a new cluster', sync);
  }

  /** The first batch from a previous owner also tells which layout keys move from. */
  async fromBatch(previous: LayoutRecord, sender: string): Promise<void> {
    if (!this.view.decided) await this.decide(previous, `${sender} sends keys from it`, undefined);
  }

  private decide(previous: LayoutRecord | undefined, why: string, sync: LayoutSync | undefined): Promise<void> {
    this.deciding ??= (async () => {
      const record = previous ? newMigration(previous, this.config) : undefined;
      await this.store.recordTopology(layoutRecord(this.config), record);
      if (record) {
        this.view.migration = this.migrationOf(record);
        this.view.migration.start();
      }
      this.view.decided = true;
      this.log(previous ? `joining: keys move here from topology ${previous.topologyId} (${why})` : `layout settled: nothing moves here (${why})`);
      // Tell every node about the migration, so that ones still on the old layout stop serving.
      if (record) sync?.announce();
    })();
    return this.deciding;
  }
}

/** The /internal/migrate endpoint of a primary (and a drain): batches from previous owners. */
function migrateRouter(view: ClusterView, learner: LayoutLearner | undefined): Router {
  const router = express.Router();
  router.post(migratePath, express.raw({ type: () => true, limit: internalBodyBytesMax }), async (req: BodyRequest, res: ServerResponse) => {
    const message = decodeMigrate(req.body as Buffer);
    if (message.topologyId !== view.config.topologyId) {
      throw new TopologyMismatchError(`${message.from} migrates to topology ${message.topologyId}; this node runs ${view.config.topologyId}`, {
        sender: message.from,
        topology: view.config.topologyId,
      });
    }
    await learner?.fromBatch(message.previous, message.from);
    if (!view.migration) {
      throw new TopologyMismatchError(`${message.from} sends keys from topology ${message.previous.topologyId}, but this node has no migration from it`, {
        sender: message.from,
        topology: view.config.topologyId,
      });
    }
    sendJson(res, 200, await view.migration.receive(message));
  });
  return router;
}
