// One kvshard process: a primary or a replica of one shard. Owns its data dir's lock, its store,
// forwarder, replication task and HTTP server.
//
// Start-up order: the config is valid (cli.ts), the data dir exists (mode 700) and is locked, the
// address is bound, then LMDB opens; a step that fails undoes the ones before it, so a refused start
// leaves neither a lock nor a data dir it created. Shutdown: stop accepting, drain in-flight requests
// and replication (bounded), close LMDB, free the lock.

import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import type { Server, ServerResponse } from 'node:http';
import { join } from 'node:path';
import express, { type Router } from 'express';
import { ConfigError, layoutRecord, parseAddress, type Config, type RoleName, type ShardConfig } from '../core/config.js';
import { createPrivateDir, DataDirLock, StartupError } from '../storage/data-dir-lock.js';
import { PrimaryRecoveringError, TopologyMismatchError } from '../core/errors.js';
import { Forwarder } from '../peer/forwarder.js';
import { sendJson, type BodyRequest } from '../core/http-reply.js';
import { createServer, serveHttpApi } from '../server/http-api.js';
import { ClusterView, LayoutSync, layoutRouter } from '../cluster/layout-sync.js';
import { internalBodyBytesMax, shutdownDrainMs } from '../core/limits.js';
import { LayoutLearner } from '../cluster/layout-learner.js';
import { decideLayoutStart } from '../cluster/layout-start.js';
import { decodeMigrate, Migration, migratePath } from '../cluster/migration.js';
import { PrimaryRecovery } from '../replication/primary-recovery.js';
import { replicaRouter, type ReplicaEndpoints, type ReplicaProgress } from '../replication/replication-receiver.js';
import { ReplicationSender } from '../replication/replication-sender.js';
import { drainStatus, primaryStatus, replicaStatus } from './status.js';
import { drainRole, primaryRole, replicaRole, type RoleContext } from './roles.js';
import type { MigrationRecord } from '../storage/migration-store.js';
import { Store } from '../storage/store.js';

export interface NodeOptions {
  readonly config: Config;
  readonly shard: ShardConfig;
  readonly role: RoleName;
  readonly dataDir: string;
  /** The cluster secret for internal endpoints. */
  readonly token: string;
  readonly log: (message: string) => void;
  /** A primary serves its own data at once and makes its replica take it (a deliberate fresh start or restore). */
  readonly overwriteReplica?: boolean;
  /** The data dir's lock, when the caller took it already (a drain reads its layout first). */
  readonly lock?: DataDirLock;
}

/** The LMDB environment of one member: `<data dir>/<shard>-primary` (also for a drain) or `-replica`. */
export function nodeDataPath(dataDir: string, shard: string, role: RoleName): string {
  return join(dataDir, `${shard}-${role === 'replica' ? 'replica' : 'primary'}`);
}

/** Binds `address`, turning the usual refusals into one line for the operator. */
async function listenOn(server: Server, address: string): Promise<void> {
  const { host, port } = parseAddress(address)!;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') throw new StartupError(`cannot listen on ${address}: the address is already in use by another process`);
    if (code === 'EADDRNOTAVAIL') throw new StartupError(`cannot listen on ${address}: it is not an address of this host`);
    if (code === 'EACCES') throw new StartupError(`cannot listen on ${address}: permission denied`);
    throw err;
  }
}

/** How a node's layout stands once it starts: decided or still to learn, and its migration, if any. */
interface LayoutStanding {
  /** False for a primary just added, which learns from its peers whether keys move to it. */
  readonly decided: boolean;
  /** The migration under way (or the last one, finished), if any. */
  readonly record: MigrationRecord | undefined;
}

/** Decides the start-up layout (see layout-start.ts) from the store and the config, and records what it decides. */
async function prepareLayout(store: Store, config: Config, name: string, role: RoleName): Promise<LayoutStanding> {
  const start = decideLayoutStart({ config, name, role, path: store.path, stored: store.topology(), migration: store.migration(), now: Date.now() });
  switch (start.kind) {
    case 'refuse':
      throw new ConfigError([start.message]);
    case 'learn-from-peers':
      return { decided: false, record: undefined };
    case 'start-as-is':
      return { decided: true, record: start.record };
    case 'record-layout':
      await store.recordTopology(layoutRecord(config));
      return { decided: true, record: start.record };
    case 'start-migration':
      await store.recordTopology(layoutRecord(config), start.record);
      return { decided: true, record: start.record };
  }
}

/** What a running node owns, closed in order by KvNode.close(). */
interface NodeParts {
  readonly lock: DataDirLock;
  readonly server: Server;
  readonly store: Store;
  readonly forwarder: Forwarder;
  readonly sender: ReplicationSender | undefined;
  readonly recovery: PrimaryRecovery | undefined;
  readonly replicaEndpoints: ReplicaEndpoints | undefined;
  readonly view: ClusterView;
  readonly sync: LayoutSync;
}

export class KvNode {
  private closing: Promise<void> | undefined;

  private constructor(
    readonly options: NodeOptions,
    readonly address: string,
    private readonly parts: NodeParts,
  ) {}

  static async start(options: NodeOptions): Promise<KvNode> {
    const { shard, role, dataDir } = options;
    const address = role === 'replica' ? shard.replica : shard.address;
    const path = nodeDataPath(dataDir, shard.name, role);
    const undo: (() => unknown)[] = [];
    try {
      if (!options.lock) {
        const created = createPrivateDir(path);
        if (created) undo.push(() => rmSync(created, { recursive: true, force: true }));
      }
      const lock = options.lock ?? (await DataDirLock.acquire(path, `kvshard ${shard.name} ${role} at ${address}`));
      undo.push(() => lock.release());
      const server = createServer(options.log);
      await listenOn(server, address);
      undo.push(() => new Promise((resolve) => server.close(resolve)));
      const store = new Store({ path, replicationLog: role !== 'replica' });
      undo.push(() => store.close());
      return await KvNode.wire(options, address, lock, server, store);
    } catch (err) {
      for (const step of undo.reverse()) await Promise.resolve(step()).catch(() => undefined);
      throw err;
    }
  }

  /** Builds the node's parts around its bound server and open store, and starts serving. */
  // biome-ignore lint/complexity/noExcessiveLinesPerFunction: wires every role in one place; issue 14's per-role factories replace it
  private static async wire(options: NodeOptions, address: string, lock: DataDirLock, server: Server, store: Store): Promise<KvNode> {
    const { config, shard, role, log } = options;
    const start = await prepareLayout(store, config, shard.name, role);
    const ownLayout = role === 'drain' ? { ...start.record!.previous, topologyId: config.topologyId } : layoutRecord(config);
    const view = new ClusterView(config, ownLayout, `${shard.name}/${role}`, start.decided, log, () => store.count());
    const forwarder = new Forwarder({ self: `${shard.name}/${role}`, topologyId: config.topologyId, token: options.token, log });
    const recovery =
      role === 'primary'
        ? new PrimaryRecovery({
            store,
            primaryAddress: address,
            replicaAddress: shard.replica,
            token: options.token,
            overwriteReplica: options.overwriteReplica === true,
            log,
          })
        : undefined;
    /** Resolves once this node serves its shard's keys: at once, or for a primary once its recovery is done. */
    const serving = recovery?.ready ?? Promise.resolve();
    let sender: ReplicationSender | undefined;
    const onCommit = () => sender?.notify();
    const migrationOf = (record: MigrationRecord) => new Migration({ store, config, self: shard.name, address, record, token: options.token, log, onCommit });
    if (start.record) view.migrationRecorded(migrationOf(start.record));
    // A primary just added learns from its peers whether keys move to it (see layout-sync.ts).
    const learner = start.decided ? undefined : new LayoutLearner(view, store, config, log, migrationOf, serving);
    let status: () => Record<string, unknown>;
    let replicaEndpoints: ReplicaEndpoints | undefined;
    const internalRoutes = express.Router();
    internalRoutes.use(layoutRouter(view));
    if (role === 'primary') {
      sender = new ReplicationSender({
        store,
        log: store.log!,
        primaryAddress: address,
        replicaAddress: shard.replica,
        token: options.token,
        logRetentionBytes: config.logRetentionBytes,
        logger: log,
        topologyId: config.topologyId,
        migrating: () => !view.decided || view.migration?.active() === true,
      });
      status = primaryStatus(store, sender, recovery!, config, view);
    } else if (role === 'drain') {
      status = drainStatus(store, config, view);
    } else {
      view.setPrimaryMigrating(store.primaryMigrating(config.topologyId));
      const progress: ReplicaProgress = { primarySeq: store.replicaState().appliedSeq, lastContactAt: 0, lastAppliedTs: 0, resyncs: 0, resyncRefused: null };
      replicaEndpoints = replicaRouter({ store, progress, view, primaryAddress: shard.address, log });
      internalRoutes.use(replicaEndpoints.router);
      status = replicaStatus(store, progress, config, view);
    }
    if (role !== 'replica') internalRoutes.use(migrateRouter(view, learner, recovery));
    const ctx: RoleContext = { config, shard, store, forwarder, sender, view, recovery };
    serveHttpApi(server, {
      role: role === 'primary' ? primaryRole(ctx) : role === 'drain' ? drainRole(ctx) : replicaRole(ctx),
      info: { shard: shard.name, role, address },
      status: () => ({ ...status(), peers: forwarder.peers() }),
      log,
      token: options.token,
      store,
      internalRoutes,
    });
    const sync = new LayoutSync({
      view,
      self: address,
      token: options.token,
      log,
      onAnswer: (peer, peerRole, answer) => learner?.onAnswer(peer, peerRole, answer, sync),
    });
    view.whenStale(() => sync.recheckWhileFenced());
    sync.announce();
    // A primary still learning its layout asks again whenever a peer starts (its first round may have
    // run out of attempts while the peers were down).
    if (!view.decided) view.whenPeerAnnounced(() => (view.decided ? undefined : sync.announceIfIdle()));
    recovery?.start();
    // Nothing is pushed to the replica or moved to other shards before the data here is settled.
    void serving.then(() => {
      sender?.start();
      view.migration?.start();
    });
    log(`${shard.name} ${role} listening on ${address}, data in ${store.path}, topology ${config.topologyId}`);
    return new KvNode(options, address, { lock, server, store, forwarder, sender, recovery, replicaEndpoints, view, sync });
  }

  /**
   * Locks the data dir of shard `name`'s primary in `dataDir` and reads the shard as that dir last knew
   * it, for a drain: the lock is passed on to start().
   */
  static async drainedShard(dataDir: string, name: string): Promise<{ shard: ShardConfig; lock: DataDirLock }> {
    const path = nodeDataPath(dataDir, name, 'drain');
    if (!existsSync(path)) throw new ConfigError([`${path}: no such data dir: there is nothing of ${name} to drain`]);
    const lock = await DataDirLock.acquire(path, `kvshard drain of ${name}`);
    try {
      const store = new Store({ path, replicationLog: true });
      try {
        const migration = store.migration();
        const layout = migration && migration.finishedAt === undefined ? migration.previous : store.topology();
        const shard = layout?.shards?.find((s) => s.name === name);
        if (!shard) throw new ConfigError([`${path}: holds no layout that names ${name}: there is nothing to drain`]);
        return { shard, lock };
      } finally {
        await store.close();
      }
    } catch (err) {
      await lock.release();
      throw err;
    }
  }

  /** Moves a drained shard's data dirs under `dataDir`/retired/ (kept, not deleted); returns where. */
  static retire(dataDir: string, name: string): string {
    const retired = join(dataDir, 'retired', `${name}-${new Date().toISOString().replace(/[:.]/g, '-')}`);
    mkdirSync(retired, { recursive: true, mode: 0o700 });
    for (const role of ['primary', 'replica']) {
      const path = join(dataDir, `${name}-${role}`);
      if (existsSync(path)) renameSync(path, join(retired, `${name}-${role}`));
    }
    return retired;
  }

  /** Resolves true once this node's migration has finished (a drain waits for this), false if closed first. */
  async migrationFinished(): Promise<boolean> {
    return (await this.parts.view.migration?.finished()) ?? true;
  }

  /** Stops accepting, lets in-flight requests and replication finish (bounded), then closes LMDB. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    const { server, sync, view, recovery, sender, forwarder, replicaEndpoints, store, lock } = this.parts;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    const deadline = new Promise<void>((resolve) => setTimeout(resolve, shutdownDrainMs).unref());
    await Promise.race([closed, deadline]);
    server.closeAllConnections();
    await sync.close();
    await recovery?.close();
    await view.migration?.close();
    await sender?.close(shutdownDrainMs);
    await forwarder.close();
    replicaEndpoints?.close();
    await store.close();
    await lock.release();
    this.options.log(`${this.options.shard.name} ${this.options.role} stopped`);
  }
}

/** The /internal/migrate endpoint of a primary (and a drain): batches from previous owners. */
function migrateRouter(view: ClusterView, learner: LayoutLearner | undefined, recovery: PrimaryRecovery | undefined): Router {
  const router = express.Router();
  router.post(migratePath, express.raw({ type: () => true, limit: internalBodyBytesMax }), async (req: BodyRequest, res: ServerResponse) => {
    const message = decodeMigrate(req.body as Buffer);
    if (!view.trusts(`${message.from}/primary`, message.address)) {
      throw new TopologyMismatchError(`${message.from} at ${message.address} is not where this node's layouts put ${message.from}'s primary`, {
        sender: message.from,
        topology: view.config.topologyId,
      });
    }
    // Keys must not land in a store that is being rebuilt from its replica; the sender retries.
    const blocked = recovery?.blocking();
    if (blocked) throw new PrimaryRecoveringError(view.node.split('/')[0]!, blocked.state);
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
