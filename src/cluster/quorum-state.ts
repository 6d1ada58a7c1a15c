// What a node knows of its standing with the majority (ClusterView.quorum): whether a majority has
// confirmed its epochs since it started, since when it has heard from a majority, and whether a peer
// holds a grant above its shard's epoch whose outcome it has not learned. The write path of a primary
// reads writeFence(); the exchanges (layout-sync.ts) feed heard().

import { canonicalAddress, type Config, type ShardConfig } from '../core/config.js';
import type { Log } from '../core/log.js';
import { otherMember, type ShardEpoch } from './epochs.js';
import { decodeGrants, type Grant, type GrantTable } from './grants.js';
import { canElectWithout, describeCount, isMajority, Liveness, votersOf } from './quorum.js';

/** What a peer's exchange tells of epochs: its table, whether it knows them, and its grants. */
export interface EpochNews {
  readonly epochs: unknown;
  readonly epochsKnown: unknown;
  readonly grants: unknown;
}

/** Why a primary must not acknowledge writes now. */
export interface WriteFence {
  readonly code: 'no_majority' | 'promotion_pending';
  readonly reason: string;
}

export interface QuorumSources {
  readonly config: Config;
  /** This node's address. */
  readonly self: string;
  readonly log: Log;
  readonly startedAt: number;
  /** The voter sets a majority is counted in (ClusterView.voterSets). */
  readonly voterSets: () => string[][];
  /** This node's shard, when its config lists it (a drain's is not), and the epoch it knows for it. */
  readonly ownShard: () => { readonly shard: ShardConfig; readonly epoch: ShardEpoch } | undefined;
  /** The epochs, for the log line that says they are confirmed. */
  readonly describeEpochs: () => string;
}

/** Whether an exchange shows that something has happened in the cluster: an epoch above 1 or a grant. */
function hasHistory(news: EpochNews): boolean {
  const epochs = typeof news.epochs === 'object' && news.epochs !== null ? Object.values(news.epochs as Record<string, unknown>) : [];
  if (epochs.some((e) => typeof e === 'object' && e !== null && ((e as { epoch?: unknown }).epoch as number) > 1)) return true;
  return Object.keys(decodeGrants(news.grants)).length > 0;
}

export class QuorumState {
  /** When this node last heard from each peer. */
  readonly liveness: Liveness;
  /** False until a majority (or the shard's other member) has told this node its epochs (see epochsConfirmed). */
  private confirmed = true;
  private readonly confirmedWaiters: (() => void)[] = [];
  /** Whether this node knows the cluster's epochs: its data dir kept them, or a majority told it. */
  private known = true;
  /** The peers that told this node their epochs since it started, and those of them that know them. */
  private readonly toldBy = new Set<string>();
  private readonly knowers = new Set<string>();
  /** Whether any peer's exchange showed an epoch above 1 or a grant: the cluster is not new. */
  private historySeen = false;
  /** Since when this node has heard from a majority (cached: the write path reads it). */
  private majoritySince: number;
  /** Whether losing the majority stops this node's writes (see canElectWithout). */
  private readonly minorityFences: boolean;
  /**
   * A grant for this node's shard above the epoch it knows, seen in a peer's exchange: a promotion may
   * have counted that this node has not heard of, so as primary it takes no writes until the grant's
   * member says whether it was promoted (see grantResolved).
   */
  private pendingGrant: Grant | undefined;
  /** Grants whose member said it was not promoted at them, and will not be: the highest such epoch. */
  private resolvedGrantEpoch = 0;
  /** The highest epoch of this node's shard any peer has said it granted (to anyone). */
  private grantSeen = 0;
  private grantListener: ((grant: Grant) => void) | undefined;
  private knownListener: (() => void) | undefined;
  /** This node's own grants, read for exchanges (the store keeps them). */
  grantsSource: () => GrantTable = () => ({});

  constructor(private readonly sources: QuorumSources) {
    this.liveness = new Liveness(sources.self, sources.startedAt);
    this.majoritySince = sources.startedAt;
    // With a coordinator, the lease fences a primary (member-role.ts), not the majority of nodes.
    this.minorityFences = sources.config.coordinator === undefined && canElectWithout([votersOf(sources.config.shards)]);
  }

  /**
   * Whether a majority of nodes (or the shard's other member, with its data dir intact) has told this one
   * its epochs since it started, when that matters: a restarted primary takes writes only then, since the
   * cluster may have failed over without it. Any promotion that counted was stored by a majority, and
   * any two majorities share a node.
   */
  get epochsConfirmed(): boolean {
    return this.confirmed;
  }

  /** Whether this node knows the cluster's epochs (false: a new or emptied data dir, until a majority told it). */
  get epochsKnown(): boolean {
    return this.known;
  }

  /**
   * Transition, at start-up: this node waits to hear its epochs from a majority (see epochsConfirmed).
   * `known`: its data dir kept epochs; a node without them does not know them until confirmed.
   */
  awaitEpochConfirmation(known: boolean): void {
    this.confirmed = false;
    this.known = known;
  }

  /** Calls `listener` when this node comes to know the epochs (the node stores that it does). */
  whenKnown(listener: () => void): void {
    this.knownListener = listener;
  }

  /** Resolves once epochsConfirmed is true (at once when it is). */
  whenEpochsConfirmed(): Promise<void> {
    if (this.confirmed) return Promise.resolve();
    return new Promise((resolve) => this.confirmedWaiters.push(resolve));
  }

  /**
   * Transition: a peer and this node exchanged epochs (either direction; its epochs are learned
   * already): it is heard now (and answered a request sent at `sentAt`, when this node asked), its
   * grant for this node's shard is noted, and it counts towards confirming this node's epochs.
   */
  heard(address: string, news: EpochNews, now: number, sentAt: number | undefined): void {
    const { self, voterSets } = this.sources;
    this.liveness.heard(address, now);
    if (sentAt !== undefined) {
      this.liveness.answered(address, sentAt);
      this.majoritySince = this.liveness.majorityAt(voterSets());
    }
    const own = this.sources.ownShard();
    if (own !== undefined) this.noteGrant(own.shard.name, own.epoch, decodeGrants(news.grants)[own.shard.name]);
    if (this.confirmed) return;
    const peer = canonicalAddress(address);
    this.toldBy.add(peer);
    if (news.epochsKnown === true) this.knowers.add(peer);
    this.historySeen ||= hasHistory(news);
    const me = canonicalAddress(self);
    const byOtherMember = own !== undefined && news.epochsKnown === true && canonicalAddress(otherMember(own.shard, self)) === peer;
    // Only nodes that know their epochs confirm: one with an emptied data dir may be the one node a
    // past promotion's majority shares with this one. A cluster in which nothing has happened yet (no
    // epoch above 1, no grant, as far as a majority says) is new: there its new nodes confirm each other.
    const byMajority = isMajority(new Set([...this.knowers, ...(this.known ? [me] : [])]), voterSets());
    const asNew = !this.known && !this.historySeen && isMajority(new Set([...this.toldBy, me]), voterSets());
    if (!byOtherMember && !byMajority && !asNew) return;
    this.confirmed = true;
    if (!this.known) {
      this.known = true;
      this.knownListener?.();
    }
    for (const resolve of this.confirmedWaiters.splice(0)) resolve();
    const by = byMajority
      ? `a majority that knows them (${describeCount(this.knowers, voterSets())} peers)`
      : asNew
        ? `a majority of a new cluster (${describeCount(this.toldBy, voterSets())} peers)`
        : `the shard's other member ${address}`;
    this.sources.log.info(`epochs confirmed by ${by}: ${this.sources.describeEpochs()}`);
  }

  /** A peer's grant for this node's shard: above the epoch known (and not resolved), it holds writes until resolved. */
  private noteGrant(shardName: string, known: ShardEpoch, grant: Grant | undefined): void {
    if (grant !== undefined) this.grantSeen = Math.max(this.grantSeen, grant.epoch);
    if (grant === undefined || grant.epoch <= known.epoch || grant.epoch <= this.resolvedGrantEpoch) return;
    // This node's own grants are its own failover's, which it knows the outcome of.
    if (canonicalAddress(grant.primary) === canonicalAddress(this.sources.self)) return;
    if (this.pendingGrant !== undefined && this.pendingGrant.epoch >= grant.epoch) return;
    this.pendingGrant = grant;
    this.sources.log.warn(
      `a peer granted epoch ${grant.epoch} of ${shardName} to ${grant.primary}, above this node's epoch: asking ${grant.primary} whether it was promoted`,
    );
    this.grantListener?.(grant);
  }

  /**
   * The highest epoch of this node's shard that a peer said it granted: a promotion of this node asks
   * above it, so that it never reuses an epoch granted before, even one it refused itself.
   */
  get highestGrantSeen(): number {
    return this.grantSeen;
  }

  /** The grant above this node's epoch still to be resolved, if any (one the epoch has caught up with is dropped). */
  get unresolvedGrant(): Grant | undefined {
    const g = this.pendingGrant;
    if (g !== undefined && (this.sources.ownShard()?.epoch.epoch ?? 0) >= g.epoch) this.pendingGrant = undefined;
    return this.pendingGrant;
  }

  /** Transition: the grant's member said it was not promoted at `epoch` (and now never will be). */
  grantResolved(epoch: number): void {
    this.resolvedGrantEpoch = Math.max(this.resolvedGrantEpoch, epoch);
    if (this.pendingGrant !== undefined && this.pendingGrant.epoch <= epoch) {
      this.sources.log.info(`${this.pendingGrant.primary} was not promoted at epoch ${this.pendingGrant.epoch}: writes go on`);
      this.pendingGrant = undefined;
    }
  }

  /** Calls `listener` when a grant above this node's epoch is seen (the node asks its member). */
  whenGrantSeen(listener: (grant: Grant) => void): void {
    this.grantListener = listener;
  }

  /**
   * Why this node, as its shard's primary, must not acknowledge writes now, if it must not: it has not
   * heard from a majority for half a node timeout (Redis Cluster's minority rule: the majority may be
   * promoting the other member), or a peer holds a grant above its epoch not yet resolved.
   */
  writeFence(now: number): WriteFence | undefined {
    const halfTimeout = this.sources.config.nodeTimeoutMs / 2;
    if (this.minorityFences && now - this.majoritySince > halfTimeout) {
      return {
        code: 'no_majority',
        reason: `this primary has not heard from a majority of the cluster's nodes for ${now - this.majoritySince} ms (node_timeout_ms / 2 is ${halfTimeout})`,
      };
    }
    const pending = this.pendingGrant === undefined ? undefined : this.unresolvedGrant;
    if (pending !== undefined) {
      return {
        code: 'promotion_pending',
        reason: `a node granted epoch ${pending.epoch} to ${pending.primary}; this primary waits to learn whether it was promoted`,
      };
    }
    return undefined;
  }
}
