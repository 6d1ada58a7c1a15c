// One node's view of the cluster layout, shared by the parts that act on it (layout-sync.ts answers
// and announces from it, the role handlers refuse by it, a replica's receiver records what its primary
// says). It changes only through the named transitions of ClusterView.

import { canonicalAddress, configName, type Config, type LayoutRecord, type ShardConfig } from '../core/config.js';
import { untrustedLoggedMax } from '../core/limits.js';
import { decodeEpoch, initialEpoch, judgeEpoch, shardAt, type EpochTable, type ShardEpoch } from './epochs.js';
import type { GrantTable } from './grants.js';
import { votersOf } from './quorum.js';
import { QuorumState, type EpochNews } from './quorum-state.js';

export type { EpochNews } from './quorum-state.js';
import type { Migration } from './migration.js';
import type { Log } from '../core/log.js';

export interface LayoutAnnouncement {
  /** `<shard>/<role>` of the sender. */
  readonly from: string;
  /** The sender's address: the receiver acts only when its own config gives it to `from`. */
  readonly address: string;
  readonly layoutId: string;
  /** The layout the sender migrates from, if it is migrating. */
  readonly previousLayoutId: string | null;
  /** The epochs the sender knows (see epochs.ts). */
  readonly epochs: EpochTable;
  /** Whether the sender knows the cluster's epochs: false on a new or emptied data dir not yet told by a majority. */
  readonly epochsKnown: boolean;
  /** The promotion grants the sender stored (see grants.ts). */
  readonly grants: GrantTable;
}

export interface LayoutAnswer {
  readonly node: string;
  /** Whether this node knows its layout history (false: a primary just added, still learning). */
  readonly decided: boolean;
  readonly layout: LayoutRecord;
  /** The layout this node migrates from, while its migration runs. */
  readonly migratingFrom: LayoutRecord | null;
  /**
   * 0 when this node holds no key, else a positive number. Not a count: counting is O(keys) in LMDB,
   * and an answer goes out with every heartbeat; a primary still learning its layout asks only this.
   */
  readonly keys: number;
  /** The epochs this node knows. */
  readonly epochs: EpochTable;
  readonly epochsKnown: boolean;
  readonly grants: GrantTable;
}

/** Why a node refuses data requests because the cluster moved on from its layout, and who said so. */
export interface Fence {
  readonly reason: string;
  /** The address of the member whose layout made this node stale. */
  readonly byAddress: string;
  /** The newer layout that member runs. */
  readonly layoutId: string;
}

/**
 * One node's view of the cluster: the layout it runs, whether it knows its layout history, whether it is
 * stale, what a replica heard of its primary, and its migration if any. Every change is a named
 * transition below, so this class is the one place to read how the view can change.
 */
export class ClusterView {
  /** False for a primary just added that still has to learn whether keys move to it. */
  private layoutKnown: boolean;
  /** Set while this node must not serve data requests (it runs an outdated layout). */
  private staleFence: Fence | undefined;
  /** On a replica: why its primary's layout keeps it from serving reads, if it does. */
  private primaryLayoutMismatch: string | undefined;
  /** On a replica: whether its primary said keys may still be moving to it (undefined: not heard yet). */
  private primaryKeysMovingIn: boolean | undefined;
  private currentMigration: Migration | undefined;
  /** Announcements from unexpected senders already logged, so each is logged once. */
  private readonly untrusted = new Set<string>();
  private staleListener: (() => void) | undefined;
  private peerAnnouncedListener: (() => void) | undefined;
  /** The epoch this node knows for each shard of its config, and each shard as it stands at it. */
  private readonly epochByShard = new Map<string, ShardEpoch>();
  /** Epoch changes (failovers) this node has seen since it started, by shard, for /metrics. */
  readonly epochChanges = new Map<string, number>();
  private readonly shardsByIdx: ShardConfig[];
  private epochListener: ((shard: ShardConfig, epoch: ShardEpoch) => void) | undefined;
  /** What each peer running this node's layout last said it migrates from (null: from nothing). */
  private readonly peersMigratingFrom = new Map<string, LayoutRecord | null>();
  /** Whether a majority confirmed this node's epochs, whether it hears one, and grants above its epoch. */
  readonly quorum: QuorumState;

  constructor(
    readonly config: Config,
    /** This node's own layout: the config's, or for a draining shard its previous one plus the config's layout. */
    readonly layout: LayoutRecord,
    /** `<shard>/<role>` of this node; the role changes with a failover (roleChanged). */
    public node: string,
    decided: boolean,
    private readonly log: Log,
    /** 0 when this node holds no key, else a positive number (see LayoutAnswer.keys). */
    private readonly anyKeys: () => number,
    /** This node's own address. */
    readonly self: string,
    /** The time the node started (ms since the epoch). */
    startedAt: number,
  ) {
    this.layoutKnown = decided;
    this.shardsByIdx = config.shards.slice();
    for (const shard of config.shards) this.epochByShard.set(shard.name, initialEpoch(shard));
    this.quorum = new QuorumState({
      config,
      self,
      log,
      startedAt,
      voterSets: () => this.voterSets(),
      ownShard: () => {
        const name = this.node.split('/')[0]!;
        const epoch = this.epochByShard.get(name);
        return epoch === undefined ? undefined : { shard: config.shards.find((s) => s.name === name)!, epoch };
      },
      describeEpochs: () => JSON.stringify(this.epochs()),
    });
  }

  /** The shard of index `idx` as it stands now: `address` is its primary at its current epoch, `replica` the other member. */
  shardNow(idx: number): ShardConfig {
    return this.shardsByIdx[idx]!;
  }

  /**
   * `shard` (from any layout: the config's or a previous one) as it stands now: a shard of the config
   * with the same members gets its current primary; any other is taken as listed.
   */
  currentOf(shard: ShardConfig): ShardConfig {
    const known = this.config.shards[shard.idx];
    if (!known || known.name !== shard.name || known.address !== shard.address || known.replica !== shard.replica) return shard;
    return this.shardsByIdx[shard.idx]!;
  }

  /** Transition: a peer at `address` running this node's layout said what it migrates from. */
  peerMigrates(address: string, from: LayoutRecord | null): void {
    this.peersMigratingFrom.set(address, from);
  }

  /** The layout some peer running this node's layout still migrates from, if any. */
  peerMigratingFrom(): LayoutRecord | undefined {
    for (const from of this.peersMigratingFrom.values()) if (from) return from;
    return undefined;
  }

  /** The epoch this node knows for shard `name` (of its config). */
  epochOf(name: string): ShardEpoch {
    return this.epochByShard.get(name)!;
  }

  /** The epoch of shard `name` when it is in this node's config (a drained shard is not, and has none). */
  epochIfListed(name: string): ShardEpoch | undefined {
    return this.epochByShard.get(name);
  }

  /** Every shard's epoch, to exchange and to store. */
  epochs(): EpochTable {
    return Object.fromEntries(this.epochByShard);
  }

  /**
   * Transition: takes the epochs a peer (or this node's store) knows, shard by shard: a higher epoch
   * replaces this node's (see judgeEpoch). Entries for shards this node's config does not list, or whose
   * primary is not a member of the shard, are ignored. Returns whether anything changed.
   */
  learnEpochs(table: unknown, from: string): boolean {
    if (typeof table !== 'object' || table === null) return false;
    let changed = false;
    for (const shard of this.config.shards) {
      const theirs = decodeEpoch((table as Record<string, unknown>)[shard.name], shard);
      if (theirs === undefined) continue;
      const verdict = judgeEpoch(this.epochOf(shard.name), theirs);
      if (verdict.kind === 'keep') continue;
      if (verdict.kind === 'conflict') {
        this.log.error(
          `${from} says ${theirs.primary} is primary of ${shard.name} at epoch ${theirs.epoch}, this node says ${this.epochOf(shard.name).primary}; keeping ${this.epochOf(shard.name).primary}`,
        );
        continue;
      }
      this.setEpoch(shard, theirs);
      changed = true;
    }
    return changed;
  }

  /** The voter sets a majority is counted in: the current layout and, while migrating, the previous one. */
  voterSets(): string[][] {
    const sets = [votersOf(this.config.shards)];
    if (this.currentMigration?.active()) sets.push(votersOf(this.currentMigration.previous.shards));
    return sets;
  }

  /**
   * Transition: a peer and this node exchanged epochs (either direction): it is heard now, its epochs
   * are learned, its grants for this node's shard noted, and it counts towards confirming this node's own.
   */
  heardEpochs(address: string, news: EpochNews, from: string, now: number, sentAt?: number): void {
    this.learnEpochs(news.epochs, from);
    this.quorum.heard(address, news, now, sentAt);
  }

  /** Transition: this node made `epoch` its shard's new epoch (a failover it carried out). */
  adoptEpoch(shardName: string, epoch: ShardEpoch): void {
    const shard = this.config.shards.find((s) => s.name === shardName)!;
    this.setEpoch(shard, epoch);
  }

  private setEpoch(shard: ShardConfig, epoch: ShardEpoch): void {
    this.epochByShard.set(shard.name, epoch);
    this.epochChanges.set(shard.name, (this.epochChanges.get(shard.name) ?? 0) + 1);
    this.shardsByIdx[shard.idx] = shardAt(shard, epoch);
    this.epochListener?.(shard, epoch);
  }

  /** Calls `listener` after any shard's epoch changed (the node stores it, and changes its role by it). */
  whenEpochChanged(listener: (shard: ShardConfig, epoch: ShardEpoch) => void): void {
    this.epochListener = listener;
  }

  /** Whether this node knows its layout history (false: a primary just added, still learning). */
  get decided(): boolean {
    return this.layoutKnown;
  }

  /** The migration under way, or the last one (finished), if any. */
  get migration(): Migration | undefined {
    return this.currentMigration;
  }

  /** Why and by whom this node was made stale, while it is. */
  get fence(): Fence | undefined {
    return this.staleFence;
  }

  /** On a replica: whether its primary said keys may still be moving to it (undefined: not heard yet). */
  get primaryMigrating(): boolean | undefined {
    return this.primaryKeysMovingIn;
  }

  /** The reason this node refuses data requests, if any. */
  refusal(): string | undefined {
    return this.staleFence?.reason ?? this.primaryLayoutMismatch;
  }

  announcement(address: string): LayoutAnnouncement {
    return {
      from: this.node,
      address,
      layoutId: this.config.layoutId,
      previousLayoutId: this.currentMigration?.active() ? this.currentMigration.previous.layoutId : null,
      epochs: this.epochs(),
      epochsKnown: this.quorum.epochsKnown,
      grants: this.quorum.grantsSource(),
    };
  }

  /**
   * Whether this node's own layouts (its config, and while migrating the previous one) give `address` to
   * a member of `node`'s shard (`node` is `<shard>/<role>`; a drain runs at its shard's old primary
   * address). Either member counts whatever role it claims, since a failover swaps the roles. Logs a
   * sender it does not trust, once.
   */
  trusts(node: string, address: string): boolean {
    const [name] = node.split('/');
    const want = canonicalAddress(address);
    for (const shards of [this.config.shards, this.layout.shards, this.currentMigration?.previous.shards ?? []]) {
      for (const shard of shards) {
        if (shard.name === name && (canonicalAddress(shard.address) === want || canonicalAddress(shard.replica) === want)) return true;
      }
    }
    const key = `${node} ${address}`;
    if (!this.untrusted.has(key) && this.untrusted.size < untrustedLoggedMax) {
      this.untrusted.add(key);
      this.log.warn(`ignoring layout news from ${node} at ${address}: this node's ${configName(this.config)} does not put ${node} there`);
    }
    return false;
  }

  answer(): LayoutAnswer {
    return {
      node: this.node,
      decided: this.layoutKnown,
      layout: this.layout,
      migratingFrom: this.currentMigration?.active() ? this.currentMigration.previous : null,
      keys: this.anyKeys(),
      epochs: this.epochs(),
      epochsKnown: this.quorum.epochsKnown,
      grants: this.quorum.grantsSource(),
    };
  }

  /** Transition: the migration the store records (under way or finished) is this node's at start-up. */
  migrationRecorded(migration: Migration): void {
    this.currentMigration = migration;
  }

  /** Transition: a primary still learning has learned its layout history: keys move here by `migration`, or nothing moves. */
  layoutDecided(migration: Migration | undefined): void {
    if (migration) this.currentMigration = migration;
    this.layoutKnown = true;
  }

  /** Transition: a trusted peer (at `address`) migrates away from this node's layout, so this node is stale. */
  markStale(peer: string, address: string, peerLayoutId: string, previousLayoutId: string | null): void {
    if (this.staleFence || previousLayoutId !== this.config.layoutId || peerLayoutId === this.config.layoutId) return;
    const reason =
      `${this.node} runs layout ${this.config.layoutId} (${configName(this.config)}), but ${peer} has moved the cluster on to ` +
      `layout ${peerLayoutId}; restart this node with the new sharding.toml`;
    this.staleFence = { reason, byAddress: address, layoutId: peerLayoutId };
    this.log.warn(`refusing data requests from now on: ${reason}`);
    this.staleListener?.();
  }

  /** Transition: the newer layout is gone from every member this node reaches, so it serves again. */
  clearStale(why: string): void {
    if (!this.staleFence) return;
    this.log.info(`serving data requests again: ${why}`);
    this.staleFence = undefined;
  }

  /** Transition, on a replica: its primary runs `layoutId`; another layout than this node's stops its reads. */
  primaryRuns(layoutId: string): void {
    const mismatch =
      layoutId === this.config.layoutId
        ? undefined
        : `this replica runs layout ${this.config.layoutId} (${configName(this.config)}) but its primary runs ${layoutId}; ` +
          'restart it with the same sharding.toml as its primary';
    if (mismatch !== this.primaryLayoutMismatch) this.log.warn(mismatch ? `refusing reads: ${mismatch}` : 'primary runs the same layout again; serving reads');
    this.primaryLayoutMismatch = mismatch;
  }

  /** Transition, on a replica: what its primary last said (or the store remembers) of keys moving in. */
  setPrimaryMigrating(migrating: boolean | undefined): void {
    this.primaryKeysMovingIn = migrating;
  }

  /** Transition: a trusted peer announced itself (a node still learning its layout asks it again). */
  peerAnnounced(): void {
    this.peerAnnouncedListener?.();
  }

  /** Calls `listener` whenever this node becomes stale, so it starts asking whether that still holds. */
  whenStale(listener: () => void): void {
    this.staleListener = listener;
  }

  /** Calls `listener` whenever a trusted peer announces itself. */
  whenPeerAnnounced(listener: () => void): void {
    this.peerAnnouncedListener = listener;
  }
}
