// One factory per role (primary, replica, drain): what the role listens on, where its data lives, and the
// parts it owns once built (its data handler, internal routes, /status fields, background work and how
// that work stops). node.ts wires whichever factory the role names and never asks which role it runs, so
// a role change at runtime is one more transition: close the old role's parts, build the new role's.

import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import express, { type Router } from 'express';
import { canonicalAddress, layoutRecord, type Config, type LayoutRecord, type RoleName, type ShardConfig } from '../core/config.js';
import { LayoutMismatchError, NotServingPrimaryError, PrimaryRecoveringError } from '../core/errors.js';
import { sendJson, type BodyRequest } from '../core/http-reply.js';
import { internalBodyBytesMax, shutdownDrainMs } from '../core/limits.js';
import { LayoutLearner } from '../cluster/layout-learner.js';
import type { ClusterView, LayoutAnswer } from '../cluster/cluster-view.js';
import { otherMember } from '../cluster/epochs.js';
import type { MemberName } from './member-dirs.js';
import type { LayoutSync } from '../cluster/layout-sync.js';
import { decodeMigrate, Migration, migratePath } from '../cluster/migration.js';
import type { Forwarder } from '../peer/forwarder.js';
import { PrimaryRecovery } from '../replication/primary-recovery.js';
import { replicaRouter, type ReplicaProgress } from '../replication/replication-receiver.js';
import { ReplicationSender } from '../replication/replication-sender.js';
import type { OnEpochSeen } from '../replication/replication-protocol.js';
import type { MigrationRecord } from '../storage/migration-store.js';
import type { Store } from '../storage/store.js';
import { drainRole, primaryRole, replicaRole, type Role } from './roles.js';
import type { Member } from './member.js';
import { drainStatus, primaryStatus, replicaStatus } from './status.js';
import type { Log } from '../core/log.js';

/** How a node's layout stands once it starts: decided or still to learn, and its migration, if any. */
export interface LayoutStanding {
  /** False for a primary just added, which learns from its peers whether keys move to it. */
  readonly decided: boolean;
  /** The migration under way (or the last one, finished), if any. */
  readonly record: MigrationRecord | undefined;
}

/** What every role is built from: the node's config, its open store and the parts all roles share. */
export interface RoleDeps {
  readonly config: Config;
  readonly shard: ShardConfig;
  /** The address this node listens on. */
  readonly address: string;
  readonly token: string;
  readonly log: Log;
  /** A primary serves its own data at once and makes its replica take it. */
  readonly overwriteReplica: boolean;
  readonly store: Store;
  readonly view: ClusterView;
  readonly forwarder: Forwarder;
  readonly layout: LayoutStanding;
  /** The member's role as member-role.ts decides it; undefined on a drain, whose shard is not in the config. */
  readonly member: Member | undefined;
  /** A replica promoted at run time: it serves at once (see PrimaryRecovery's promoted). */
  readonly promoted: boolean;
  /**
   * The replica named a higher epoch for this node's shard in its answer to the primary's replication or
   * recovery: the node learns it as named (node.ts passes it to the cluster view).
   */
  readonly onEpochSeen?: OnEpochSeen;
}

/** What a built role owns. */
export interface RoleParts {
  readonly handler: Role;
  /** The role's internal endpoints, beside the layout endpoint every node serves. */
  readonly routes: Router;
  /** The role's /status fields. */
  readonly status: () => Record<string, unknown>;
  /** A peer's answer to this node's layout announcement (a primary still learning its layout learns from it). */
  onLayoutAnswer(peer: ShardConfig, role: 'primary' | 'replica', answer: LayoutAnswer, sync: LayoutSync): void | Promise<void>;
  /** Starts the role's background work once the node serves. */
  start(sync: LayoutSync): void;
  /** A replica's lag: entries its primary had past its own at their last contact. */
  lag?(): number;
  /** Stops the role's background work, letting replication catch up for at most `drainMs` (default shutdownDrainMs). */
  close(drainMs?: number): Promise<void>;
}

/** A role: where it runs and what it builds. */
export interface RoleFactory {
  /** The address the role listens on: its shard's primary address (a drain too) or its replica's. */
  address(shard: ShardConfig): string;
  /** The member whose data dir the role opens at start: `a` (at `address`) or `b` (at `replica`); see member-dirs.ts. */
  readonly member: MemberName;
  /** Whether its store keeps a replication log (what a primary pushes to its replica). */
  readonly replicationLog: boolean;
  /** The layout the node announces as its own. */
  ownLayout(config: Config, layout: LayoutStanding): LayoutRecord;
  build(deps: RoleDeps): RoleParts;
}

/** A migration of this node, from its store's record. */
function migrationOf(deps: RoleDeps, record: MigrationRecord, onCommit: () => void): Migration {
  const { store, config, shard, address, token, log } = deps;
  return new Migration({ store, config, self: shard.name, address, record, token, log, onCommit, current: (s) => deps.view.currentOf(s) });
}

/** Nothing to wake on a node without a replication sender. */
function noSender(): void {}

/** Nothing to learn on a node whose layout is decided at start-up. */
function noLearning(): void {}

/**
 * Starts the recorded migration of a role with no recovery to wait for: it serves at once, and the
 * migration starts right after start-up, once the node has said it listens.
 */
function startMigrationNow(view: ClusterView): void {
  void Promise.resolve().then(() => view.migration?.start());
}

/**
 * The /internal/migrate endpoint of a primary (and a drain): batches from previous owners. `self` is this
 * node's shard and address: a member whose shard's epoch names another primary refuses batches, since
 * its role is about to change (the store refuses them too, once its demotion has begun).
 */
function migrateRouter(
  view: ClusterView,
  self: { readonly shard: string; readonly address: string },
  learner: LayoutLearner | undefined,
  recovery: PrimaryRecovery | undefined,
): Router {
  const router = express.Router();
  router.post(migratePath, express.raw({ type: () => true, limit: internalBodyBytesMax }), async (req: BodyRequest, res: ServerResponse) => {
    const message = decodeMigrate(req.body as Buffer);
    // A drained shard is not in the config and has no epoch: it is the only member that receives for it.
    const epoch = view.epochIfListed(self.shard);
    if (epoch && canonicalAddress(epoch.primary) !== canonicalAddress(self.address)) {
      throw new NotServingPrimaryError('migration batch', `${self.shard}'s primary is ${epoch.primary} at epoch ${epoch.epoch}`, {
        shard: self.shard,
        primary: epoch.primary,
        epoch: epoch.epoch,
      });
    }
    const mismatch = (why: string) => new LayoutMismatchError(why, { sender: message.from, layout_id: view.config.layoutId });
    if (!view.trusts(`${message.from}/primary`, message.address)) {
      throw mismatch(`${message.from} at ${message.address} is not where this node's layouts put ${message.from}'s primary`);
    }
    // Of a shard in the config, only the member that is primary now sends (a failover swaps the two).
    const sender = view.config.shards.find((s) => s.name === message.from);
    if (sender && canonicalAddress(view.currentOf(sender).address) !== canonicalAddress(message.address)) {
      throw mismatch(`${message.address} is not ${message.from}'s primary at epoch ${view.epochOf(message.from).epoch}`);
    }
    // Keys must not land in a store that is being rebuilt from its replica; the sender retries.
    const blocked = recovery?.blocking();
    if (blocked) throw new PrimaryRecoveringError(view.node.split('/')[0]!, blocked.state);
    if (message.layoutId !== view.config.layoutId) {
      throw mismatch(`${message.from} migrates to layout ${message.layoutId}; this node runs ${view.config.layoutId}`);
    }
    await learner?.fromBatch(message.previous, message.from);
    if (!view.migration) {
      throw mismatch(`${message.from} sends keys from layout ${message.previous.layoutId}, but this node has no migration from it`);
    }
    sendJson(res, 200, await view.migration.receive(message));
  });
  return router;
}

/** A shard's primary: takes writes, replicates them to its replica, checks its data with it on start. */
function buildPrimary(deps: RoleDeps): RoleParts {
  const { config, shard, store, view, forwarder, address, token, log, member } = deps;
  assert.ok(member !== undefined, 'a primary has a member state');
  const replicaAddress = otherMember(shard, address);
  const epoch = () => view.epochOf(shard.name);
  const recovery = new PrimaryRecovery({
    store,
    shard: shard.name,
    epoch,
    onEpochSeen: deps.onEpochSeen,
    primaryAddress: address,
    replicaAddress,
    token,
    overwriteReplica: deps.overwriteReplica,
    promoted: deps.promoted,
    log,
  });
  const sender = new ReplicationSender({
    store,
    log: store.log!,
    primaryAddress: address,
    replicaAddress,
    token,
    logRetentionBytes: config.logRetentionBytes,
    logger: log,
    layoutId: config.layoutId,
    migrating: () => !view.decided || view.migration?.active() === true,
    shard: shard.name,
    epoch,
    onEpochSeen: deps.onEpochSeen,
  });
  const migrationHere = (record: MigrationRecord) => migrationOf(deps, record, () => sender.notify());
  if (deps.layout.record) view.migrationRecorded(migrationHere(deps.layout.record));
  // A primary just added learns from its peers whether keys move to it (see layout-sync.ts).
  const learner = deps.layout.decided ? undefined : new LayoutLearner(view, store, config, log, migrationHere, recovery.ready);
  const routes = express.Router();
  routes.use(migrateRouter(view, { shard: shard.name, address }, learner, recovery));
  return {
    handler: primaryRole({ config, shard, address, store, forwarder, view, sender, recovery, member }),
    routes,
    status: primaryStatus(store, sender, recovery, config, view),
    onLayoutAnswer: (peer, role, answer, sync) => learner?.onAnswer(peer, role, answer, sync),
    start(sync) {
      // A primary still learning its layout asks again whenever a peer starts (its first round may have
      // run out of attempts while the peers were down).
      if (learner) view.whenPeerAnnounced(() => (view.decided ? undefined : sync.announceIfIdle()));
      // A restarted primary checks its data with its replica only once it knows it is still primary: a
      // failover meanwhile makes it a replica, whose history must stay as it was for the rollback.
      void view.quorum.whenEpochsConfirmed().then(() => recovery.start());
      // Nothing is pushed to the replica or moved to other shards before the data here is settled.
      void recovery.ready.then(() => {
        sender.start();
        view.migration?.start();
      });
    },
    async close(drainMs = shutdownDrainMs) {
      await recovery.close();
      await view.migration?.close();
      await sender.close(drainMs);
    },
  };
}

/** A shard's replica: applies what its primary sends and answers reads. */
function buildReplica(deps: RoleDeps): RoleParts {
  const { config, shard, store, view, forwarder, log, address } = deps;
  if (deps.layout.record) view.migrationRecorded(migrationOf(deps, deps.layout.record, noSender));
  view.setPrimaryMigrating(store.dataset.primaryMigrating(config.layoutId));
  const progress: ReplicaProgress = {
    primarySeq: store.dataset.replicaState().appliedSeq,
    lastContactAt: 0,
    lastAppliedTs: 0,
    resyncs: 0,
    resyncRefused: null,
  };
  const endpoints = replicaRouter({ store, progress, view, primaryAddress: otherMember(shard, address), shard: shard.name, log });
  return {
    handler: replicaRole({ config, shard, address, store, forwarder, view }),
    routes: endpoints.router,
    status: replicaStatus(store, progress, config, view),
    lag: () => Math.max(0, progress.primarySeq - store.dataset.replicaState().appliedSeq),
    onLayoutAnswer: noLearning,
    start: () => startMigrationNow(view),
    async close() {
      await view.migration?.close();
      endpoints.close();
    },
  };
}

/** A shard removed from the config, running until its keys have moved to their new owners. */
function buildDrain(deps: RoleDeps): RoleParts {
  const { config, shard, store, view, forwarder, address } = deps;
  if (deps.layout.record) view.migrationRecorded(migrationOf(deps, deps.layout.record, noSender));
  const routes = express.Router();
  routes.use(migrateRouter(view, { shard: shard.name, address }, undefined, undefined));
  return {
    handler: drainRole({ config, shard, address, store, forwarder, view }),
    routes,
    status: drainStatus(store, config, view),
    onLayoutAnswer: noLearning,
    start: () => startMigrationNow(view),
    async close() {
      await view.migration?.close();
    },
  };
}

export const roleFactories: Readonly<Record<RoleName, RoleFactory>> = {
  primary: {
    address: (shard) => shard.address,
    member: 'a',
    replicationLog: true,
    ownLayout: (config) => layoutRecord(config),
    build: buildPrimary,
  },
  replica: {
    address: (shard) => shard.replica,
    member: 'b',
    replicationLog: false,
    ownLayout: (config) => layoutRecord(config),
    build: buildReplica,
  },
  drain: {
    address: (shard) => shard.address,
    member: 'a',
    replicationLog: true,
    // A drain announces the layout it drains from, under the config's layout.
    ownLayout: (config, layout) => ({ ...layout.record!.previous, layoutId: config.layoutId }),
    build: buildDrain,
  },
};
