// One node's view of the cluster layout, shared by the parts that act on it (layout-sync.ts answers
// and announces from it, the role handlers refuse by it, a replica's receiver records what its primary
// says). It changes only through the named transitions of ClusterView.

import { canonicalAddress, configName, type Config, type LayoutRecord } from '../core/config.js';
import { untrustedLoggedMax } from '../core/limits.js';
import type { Migration } from './migration.js';

export interface LayoutAnnouncement {
  /** `<shard>/<role>` of the sender. */
  readonly from: string;
  /** The sender's address: the receiver acts only when its own config gives it to `from`. */
  readonly address: string;
  readonly layoutId: string;
  /** The layout the sender migrates from, if it is migrating. */
  readonly previousLayoutId: string | null;
}

export interface LayoutAnswer {
  readonly node: string;
  /** Whether this node knows its layout history (false: a primary just added, still learning). */
  readonly decided: boolean;
  readonly layout: LayoutRecord;
  /** The layout this node migrates from, while its migration runs. */
  readonly migratingFrom: LayoutRecord | null;
  /** Keys this node holds. */
  readonly keys: number;
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

  constructor(
    readonly config: Config,
    /** This node's own layout: the config's, or for a draining shard its previous one plus the config's layout. */
    readonly layout: LayoutRecord,
    readonly node: string,
    decided: boolean,
    private readonly log: (message: string) => void,
    private readonly keyCount: () => number,
  ) {
    this.layoutKnown = decided;
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
    };
  }

  /**
   * Whether this node's own layouts (its config, and while migrating the previous one) give `address` to
   * `node` (`<shard>/<role>`; a drain runs at its shard's old primary address). Logs a sender it does not
   * trust, once.
   */
  trusts(node: string, address: string): boolean {
    const [name, role] = node.split('/');
    const want = canonicalAddress(address);
    for (const shards of [this.config.shards, this.layout.shards, this.currentMigration?.previous.shards ?? []]) {
      for (const shard of shards) {
        if (shard.name === name && canonicalAddress(role === 'replica' ? shard.replica : shard.address) === want) return true;
      }
    }
    const key = `${node} ${address}`;
    if (!this.untrusted.has(key) && this.untrusted.size < untrustedLoggedMax) {
      this.untrusted.add(key);
      this.log(`ignoring layout news from ${node} at ${address}: this node's ${configName(this.config)} does not put ${node} there`);
    }
    return false;
  }

  answer(): LayoutAnswer {
    return {
      node: this.node,
      decided: this.layoutKnown,
      layout: this.layout,
      migratingFrom: this.currentMigration?.active() ? this.currentMigration.previous : null,
      keys: this.keyCount(),
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
    this.log(`refusing data requests from now on: ${reason}`);
    this.staleListener?.();
  }

  /** Transition: the newer layout is gone from every member this node reaches, so it serves again. */
  clearStale(why: string): void {
    if (!this.staleFence) return;
    this.log(`serving data requests again: ${why}`);
    this.staleFence = undefined;
  }

  /** Transition, on a replica: its primary runs `layoutId`; another layout than this node's stops its reads. */
  primaryRuns(layoutId: string): void {
    const mismatch =
      layoutId === this.config.layoutId
        ? undefined
        : `this replica runs layout ${this.config.layoutId} (${configName(this.config)}) but its primary runs ${layoutId}; ` +
          'restart it with the same sharding.toml as its primary';
    if (mismatch !== this.primaryLayoutMismatch) this.log(mismatch ? `refusing reads: ${mismatch}` : 'primary runs the same layout again; serving reads');
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
