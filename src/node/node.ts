// One kvshard process: a primary, a replica or a drain of one shard. Owns its data dir's lock, its store,
// forwarder, layout exchange and HTTP server, and the parts its role's factory (role-factories.ts) built.
//
// Start-up order: the config is valid (cli.ts), the data dir exists (mode 700) and is locked, the
// address is bound, then LMDB opens; a step that fails undoes the ones before it, so a refused start
// leaves neither a lock nor a data dir it created. Shutdown: stop accepting, drain in-flight requests
// and replication (bounded), close LMDB, free the lock.

import { rmSync } from 'node:fs';
import type { Server } from 'node:http';
import express from 'express';
import type { Config, RoleName, ShardConfig } from '../core/config.js';
import { shutdownDrainMs, shutdownIdleSweepMs } from '../core/limits.js';
import { createPrivateDir, DataDirLock } from '../storage/data-dir-lock.js';
import { Store } from '../storage/store.js';
import type { Forwarder } from '../peer/forwarder.js';
import type { ClusterView } from '../cluster/cluster-view.js';
import { LayoutSync, layoutRouter } from '../cluster/layout-sync.js';
import { newMigration } from '../cluster/layout-start.js';
import { otherMember, type ShardEpoch } from '../cluster/epochs.js';
import type { MemberEffect, PromotionKind, Transition } from '../cluster/member-role.js';
import { Member } from './member.js';
import type { LeaseKeeper } from './lease-keeper.js';
import { leaseKeeper, nodeForwarder } from './node-parts.js';
import { createServer, serveHttpApi, type HttpApi } from '../server/http-api.js';
import { failoverRouter, type FailoverEndpoints, type FailoverHost } from './failover.js';
import { roleFactories, type RoleDeps, type RoleParts } from './role-factories.js';
import { closeConnectionsAsAnswered, listenOn, prepareLayout } from './startup.js';
import { memberDataPath } from './member-dirs.js';
import { clusterStatus, openView } from './member-epochs.js';
import { Dashboard } from './dashboard.js';
import { clusterMapRouter } from './cluster-map.js';
import type { LogContext } from './logger.js';
import { metricsOffRouter, metricsRegistry, metricsRouter } from './metrics.js';
import { RequestStats } from '../server/request-stats.js';
import type { Log } from '../core/log.js';

export interface NodeOptions {
  readonly config: Config;
  readonly shard: ShardConfig;
  readonly role: RoleName;
  readonly dataDir: string;
  /** The cluster secret for internal endpoints. */
  readonly token: string;
  readonly log: Log;
  /** A primary serves its own data at once and makes its replica take it (a deliberate fresh start or restore). */
  readonly overwriteReplica?: boolean;
  /** The data dir's lock, when the caller took it already (a drain reads its layout first). */
  readonly lock?: DataDirLock;
  /** The role and epoch every log line carries, kept current by the node (node/logger.ts). */
  readonly logContext?: LogContext;
}

/** The LMDB environment of the member a role starts as: `<data dir>/<shard>-a` (also for a drain) or `-b`. */
export function nodeDataPath(dataDir: string, shard: string, role: RoleName, log?: Log): string {
  return memberDataPath(dataDir, shard, roleFactories[role].member, log);
}

/** What a running node owns, closed in order by KvNode.close(). */
interface NodeParts {
  readonly lock: DataDirLock;
  readonly server: Server;
  readonly store: Store;
  readonly forwarder: Forwarder;
  readonly view: ClusterView;
  readonly sync: LayoutSync;
  readonly dashboard: Dashboard;
}

export class KvNode {
  private closing: Promise<void> | undefined;
  private failover: FailoverEndpoints | undefined;
  /** A drain's epoch writes, one after another (a member's go through its Member's queue). */
  private changes: Promise<void> = Promise.resolve();

  private constructor(
    readonly options: NodeOptions,
    readonly address: string,
    private readonly parts: NodeParts,
    /** The current role's parts: a failover replaces them. */
    private readonly holder: { parts: RoleParts },
    private readonly deps: RoleDeps,
    private readonly api: HttpApi,
    /** The role this node serves now (a failover changes it, only through the member's effects). */
    private currentRole: RoleName,
    /** The member's role as member-role.ts decides it; undefined on a drain. */
    private readonly member: Member | undefined,
    /** With a coordinator: the member's etcd lease and its shard's key. */
    private readonly keeper: LeaseKeeper | undefined,
  ) {}

  /** The role this node serves now. */
  get role(): RoleName {
    return this.currentRole;
  }

  static async start(options: NodeOptions): Promise<KvNode> {
    const { shard, role, dataDir } = options;
    const factory = roleFactories[role];
    const address = factory.address(shard);
    const path = nodeDataPath(dataDir, shard.name, role, options.log);
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
    const { config, shard, log, token } = options;
    const layout = await prepareLayout(store, config, shard.name, options.role);
    const { view, role, started } = await openView(options, address, store, layout);
    const forwarder = nodeForwarder(options, view);
    // The member's effects are carried out by the node, which exists once its parts are built.
    let node: KvNode | undefined;
    const member = started && new Member(started, (effect) => node!.carryOut(effect), log);
    const deps: RoleDeps = {
      config,
      shard,
      address,
      token,
      log,
      overwriteReplica: options.overwriteReplica === true,
      store,
      view,
      forwarder,
      layout,
      member,
      promoted: false,
      // A replica's reply, or a recovery answer, that names a newer epoch of a shard: learned as named.
      onEpochSeen: (name, seen, from) => view.learnEpochs({ [name]: seen }, `${from}, in a replication reply`),
    };
    const parts = roleFactories[role].build(deps);
    const info = { shard: shard.name, role: role as string, address };
    const holder: { parts: RoleParts } = { parts };
    const internalRoutes = express.Router();
    internalRoutes.use(layoutRouter(view));
    internalRoutes.use((req, res, next) => holder.parts.routes(req, res, next));
    const stats = config.metrics.enabled ? new RequestStats() : undefined;
    const publicRoutes = express.Router();
    const dashboard = new Dashboard({ config, self: address, token });
    publicRoutes.use(dashboard.router());
    publicRoutes.use(clusterMapRouter(config, view, info));
    const status = () => ({
      ...holder.parts.status(),
      ...clusterStatus(view, shard.name, member?.state),
      rollbacks: store.failover.rollbacks(),
      peers: forwarder.peers(),
    });
    const api = serveHttpApi(server, { role: parts.handler, info, status, log, token, store, internalRoutes, publicRoutes, stats });
    if (stats === undefined) publicRoutes.use(metricsOffRouter());
    else {
      const sources = { config, info, status, requestStatus: api.requestStatus, requests: stats, store, forwarder, view };
      publicRoutes.use(metricsRouter(metricsRegistry(sources), config.metrics.token));
    }
    const sync = new LayoutSync({
      view,
      self: address,
      token,
      log,
      onAnswer: (peer, peerRole, answer) => holder.parts.onLayoutAnswer(peer, peerRole, answer, sync),
    });
    const keeper = leaseKeeper(options, address, member, store, holder);
    node = new KvNode(options, address, { lock, server, store, forwarder, view, sync, dashboard }, holder, deps, api, role, member, keeper);
    node.noteLogContext();
    node.failover = node.startFailover(internalRoutes, started);
    view.whenStale(() => sync.recheckWhileFenced());
    view.whenEpochChanged((changed, epoch) => node.onEpochChanged(changed, epoch));
    sync.announce();
    sync.exchangePeriodically();
    parts.start(sync);
    keeper?.start();
    log.info(
      `${shard.name} ${role} listening on ${address}, data in ${store.path}, layout ${config.layoutId}, epoch ${view.epochIfListed(shard.name)?.epoch ?? '- (drain)'}`,
    );
    return node;
  }

  /**
   * Mounts the failover endpoints and starts the member: its confirmation, and the start's effects
   * other than the store's (openView carried those out): a pause to settle or clear.
   */
  private startFailover(internalRoutes: express.Router, started: Transition | undefined): FailoverEndpoints {
    const { member } = this;
    const { view } = this.parts;
    const { shard, log } = this.options;
    const endpoints = failoverRouter(this.failoverHost(member));
    internalRoutes.use(endpoints.router);
    view.quorum.whenGrantSeen(() => endpoints.settleGrant());
    if (member === undefined || started === undefined) return endpoints;
    void view.quorum.whenEpochsConfirmed().then(() => member.dispatch({ type: 'epochsConfirmed' }));
    if (member.state.unsettled) {
      log.warn(
        `${shard.name}: this primary restarted during a switchover at epoch ${member.state.epoch}: asking ${otherMember(shard, this.address)} whether it was promoted`,
      );
    }
    void member.run(started.effects.filter((e) => e.type !== 'serve')).catch(() => undefined);
    return endpoints;
  }

  /**
   * A shard's epoch changed (learned from a peer, or this node's own promotion): for this node's own
   * shard, the member decides what follows (member-role.ts); any other shard's epochs are stored.
   */
  private onEpochChanged(shard: ShardConfig, epoch: ShardEpoch): void {
    this.options.log.info(`${shard.name} is at epoch ${epoch.epoch}: its primary is ${epoch.primary} (${epoch.kind})`);
    this.noteLogContext();
    const { member } = this;
    if (member === undefined) {
      this.changes = this.changes.then(() => this.carryOut({ type: 'storeEpochs' })).catch(() => undefined);
      return;
    }
    const event = { type: 'epochSeen', epoch: epoch.epoch, primary: epoch.primary, complete: this.parts.store.dataset.replicaComplete() } as const;
    const done = shard.name === this.options.shard.name ? member.dispatch(event) : member.run([{ type: 'storeEpochs' }]);
    void done.catch(() => undefined);
  }

  /** Carries out one of the member's effects (member-role.ts): the only way this node's role changes. */
  private async carryOut(effect: MemberEffect): Promise<void> {
    if (this.closing) return;
    const { store, view } = this.parts;
    const { shard } = this.options;
    switch (effect.type) {
      case 'storeEpochs':
        return store.failover.recordEpochs(view.epochs());
      case 'adoptEpoch':
        return view.adoptEpoch(shard.name, { epoch: effect.epoch, primary: this.address, kind: effect.kind, at: new Date().toISOString() });
      case 'become':
        return this.transition(effect.role, effect.role === 'primary' ? effect : undefined);
      case 'raise':
        return store.failover.raise(effect.epoch);
      case 'recordPause':
        return store.failover.recordSwitchoverPause({ epoch: effect.epoch, member: otherMember(shard, this.address) });
      case 'clearPause':
        return store.failover.recordSwitchoverPause(undefined);
      case 'askOutcome':
        return this.failover?.settleAfterPause(effect.epoch);
      case 'campaign':
        return this.keeper?.campaign(effect.knownEpoch);
      case 'resign':
        return this.keeper?.resign();
      case 'serve':
        throw new Error('the store is made to serve its role at start-up, by openView');
    }
  }

  /**
   * The one role transition (raft's becomeLeader/becomeFollower): the old role's parts stop (a demoted
   * primary's sender stops at once: its replica is primary now), the store is promoted or demoted, and
   * the new role's parts are built and started. Requests in the meantime meet the old role's handler,
   * which refuses writes already, since the member's state changed before this runs.
   */
  private async transition(to: 'primary' | 'replica', promotion: { readonly epoch: number; readonly rebuildFirst: boolean } | undefined): Promise<void> {
    const { store, view, sync } = this.parts;
    const from = this.currentRole;
    const started = Date.now();
    await this.holder.parts.close(0);
    // Only a member that holds a complete copy serves at once as primary; one with a new or replaced
    // data dir first rebuilds from the other member, as a restarted primary does (primary-recovery.ts).
    // A resync may have begun since the member decided, so the store is asked again.
    const complete = promotion !== undefined && !promotion.rebuildFirst && store.dataset.replicaComplete();
    if (promotion !== undefined) {
      await store.failover.promote(promotion.epoch);
      await this.takeOverMigration();
    } else await store.failover.demote();
    view.node = `${this.options.shard.name}/${to}`;
    const parts = roleFactories[to].build({
      ...this.deps,
      promoted: complete,
      layout: { decided: view.decided, record: store.migrations.migration() },
    });
    this.holder.parts = parts;
    this.currentRole = to;
    this.api.setRole(parts.handler, to);
    this.noteLogContext();
    parts.start(sync);
    // A grant above the new epoch seen while this member was replica is asked about now that writes wait on it.
    if (to === 'primary') this.failover?.settleGrant();
    this.options.log.info(`${this.options.shard.name}: this member changed from ${from} to ${to} in ${Date.now() - started} ms`);
  }

  /**
   * A replica promoted while the cluster migrates to its layout records the migration its old primary
   * ran (replicas record none), learned from its peers, so that the shard's slots still to move go on
   * moving from here.
   */
  private async takeOverMigration(): Promise<void> {
    const { store, view } = this.parts;
    const { config } = this.options;
    const record = store.migrations.migration();
    if (record?.layoutId === config.layoutId) return;
    // The old primary said it had finished (or never migrated): nothing of this shard is left to move.
    if (view.primaryMigrating === false) return;
    const previous = view.peerMigratingFrom();
    if (!previous?.shards.some((s) => s.name === this.options.shard.name)) return;
    await store.migrations.adoptMigration(newMigration(previous, config.layoutId, Date.now()));
    this.options.log.info(`taking over the migration from layout ${previous.layoutId} that this shard's old primary ran`);
  }

  /** Puts the node's role and its shard's epoch on every log line from now on. */
  private noteLogContext(): void {
    const context = this.options.logContext;
    if (context === undefined) return;
    context.role = this.currentRole;
    context.epoch = this.parts.view.epochIfListed(this.options.shard.name)?.epoch;
  }

  /** What the failover endpoints (failover.ts) use of this node. */
  private failoverHost(member: Member | undefined): FailoverHost {
    const { store, view, sync } = this.parts;
    return {
      shard: this.options.shard,
      address: this.address,
      token: this.options.token,
      log: this.options.log,
      view,
      store,
      member,
      ...(this.keeper ? { coordinator: this.keeper } : {}),
      role: () => this.currentRole,
      promote: (kind, epoch) => {
        if (member === undefined) throw new Error('a drain is promoted to nothing');
        return this.promote(member, kind, epoch);
      },
      broadcast: () => sync.broadcastNow(),
    };
  }

  /** Makes this member its shard's primary at `epoch` (granted by a majority), stored before it serves as one. */
  private async promote(member: Member, kind: PromotionKind, epoch: number): Promise<ShardEpoch> {
    const { view, store } = this.parts;
    const complete = store.dataset.replicaComplete();
    // With a coordinator the member took the shard's key in etcd: it holds it from now on.
    await member.dispatch(member.state.lease ? { type: 'campaignWon', epoch, kind, complete } : { type: 'promotionGranted', epoch, kind, complete });
    const now = view.epochOf(this.options.shard.name);
    if (this.currentRole !== 'primary' || now.epoch !== epoch) throw new Error(`the promotion to epoch ${epoch} did not take effect`);
    return now;
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
    const { server, sync, forwarder, store, lock } = this.parts;
    await this.changes;
    await this.member?.settled();
    const role = this.holder.parts;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    closeConnectionsAsAnswered(server);
    server.closeIdleConnections();
    const idleSweep = setInterval(() => server.closeIdleConnections(), shutdownIdleSweepMs);
    const deadline = new Promise<void>((resolve) => setTimeout(resolve, shutdownDrainMs).unref());
    await Promise.race([closed, deadline]);
    clearInterval(idleSweep);
    server.closeAllConnections();
    this.failover?.close();
    this.parts.dashboard.close();
    await sync.close();
    await role.close();
    // After the role: a primary's last writes have reached its replica before it releases its key.
    await this.keeper?.close();
    await forwarder.close();
    await store.close();
    await lock.release();
    this.options.log.info(`${this.options.shard.name} ${this.currentRole} at ${this.address} stopped`);
  }
}
