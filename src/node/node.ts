// One kvshard process: a primary, a replica or a drain of one shard. Owns its data dir's lock, its store,
// forwarder, layout exchange and HTTP server, and the parts its role's factory (role-factories.ts) built.
//
// Start-up order: the config is valid (cli.ts), the data dir exists (mode 700) and is locked, the
// address is bound, then LMDB opens; a step that fails undoes the ones before it, so a refused start
// leaves neither a lock nor a data dir it created. Shutdown: stop accepting, drain in-flight requests
// and replication (bounded), close LMDB, free the lock.

import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import { join } from 'node:path';
import express from 'express';
import { ConfigError, layoutRecord, parseAddress, type Config, type RoleName, type ShardConfig } from '../core/config.js';
import { shutdownDrainMs } from '../core/limits.js';
import { createPrivateDir, DataDirLock, StartupError } from '../storage/data-dir-lock.js';
import { Store } from '../storage/store.js';
import { Forwarder } from '../peer/forwarder.js';
import { ClusterView } from '../cluster/cluster-view.js';
import { LayoutSync, layoutRouter } from '../cluster/layout-sync.js';
import { decideLayoutStart } from '../cluster/layout-start.js';
import { createServer, serveHttpApi } from '../server/http-api.js';
import { roleFactories, type LayoutStanding, type RoleParts } from './role-factories.js';

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
  return join(dataDir, `${shard}-${roleFactories[role].dataDirSuffix}`);
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

/** Decides the start-up layout (see layout-start.ts) from the store and the config, and records what it decides. */
async function prepareLayout(store: Store, config: Config, name: string, role: RoleName): Promise<LayoutStanding> {
  const start = decideLayoutStart({ config, name, role, path: store.path, stored: store.layout(), migration: store.migration(), now: Date.now() });
  switch (start.kind) {
    case 'refuse':
      throw new ConfigError([start.message]);
    case 'learn-from-peers':
      return { decided: false, record: undefined };
    case 'start-as-is':
      return { decided: true, record: start.record };
    case 'record-layout':
      await store.recordLayout(layoutRecord(config));
      return { decided: true, record: start.record };
    case 'start-migration':
      await store.recordLayout(layoutRecord(config), start.record);
      return { decided: true, record: start.record };
  }
}

/** What a running node owns, closed in order by KvNode.close(). */
interface NodeParts {
  readonly lock: DataDirLock;
  readonly server: Server;
  readonly store: Store;
  readonly forwarder: Forwarder;
  readonly role: RoleParts;
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
    const factory = roleFactories[role];
    const address = factory.address(shard);
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
      const store = new Store({ path, replicationLog: factory.replicationLog });
      undo.push(() => store.close());
      return await KvNode.wire(options, address, lock, server, store);
    } catch (err) {
      for (const step of undo.reverse()) await Promise.resolve(step()).catch(() => undefined);
      throw err;
    }
  }

  /** Builds the node's parts around its bound server and open store, and starts serving. */
  private static async wire(options: NodeOptions, address: string, lock: DataDirLock, server: Server, store: Store): Promise<KvNode> {
    const { config, shard, role, log, token } = options;
    const factory = roleFactories[role];
    const layout = await prepareLayout(store, config, shard.name, role);
    const self = `${shard.name}/${role}`;
    const view = new ClusterView(config, factory.ownLayout(config, layout), self, layout.decided, log, () => store.count());
    const forwarder = new Forwarder({ self, layoutId: config.layoutId, token, log });
    const overwriteReplica = options.overwriteReplica === true;
    const parts = factory.build({ config, shard, address, token, log, overwriteReplica, store, view, forwarder, layout });
    const internalRoutes = express.Router();
    internalRoutes.use(layoutRouter(view));
    internalRoutes.use(parts.routes);
    serveHttpApi(server, {
      role: parts.handler,
      info: { shard: shard.name, role, address },
      status: () => ({ ...parts.status(), peers: forwarder.peers() }),
      log,
      token,
      store,
      internalRoutes,
    });
    const sync = new LayoutSync({ view, self: address, token, log, onAnswer: (peer, peerRole, answer) => parts.onLayoutAnswer(peer, peerRole, answer, sync) });
    view.whenStale(() => sync.recheckWhileFenced());
    sync.announce();
    parts.start(sync);
    log(`${shard.name} ${role} listening on ${address}, data in ${store.path}, layout ${config.layoutId}`);
    return new KvNode(options, address, { lock, server, store, forwarder, role: parts, view, sync });
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
        const layout = migration && migration.finishedAt === undefined ? migration.previous : store.layout();
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
    const { server, sync, role, forwarder, store, lock } = this.parts;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    const deadline = new Promise<void>((resolve) => setTimeout(resolve, shutdownDrainMs).unref());
    await Promise.race([closed, deadline]);
    server.closeAllConnections();
    await sync.close();
    await role.close();
    await forwarder.close();
    await store.close();
    await lock.release();
    this.options.log(`${this.options.shard.name} ${this.options.role} stopped`);
  }
}
