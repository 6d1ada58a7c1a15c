// What a primary just added to the cluster learns from its peers: whether keys move to it, and from which
// layout. It records the answer in the store and starts the migration once the node serves.

import { layoutRecord, type Config, type LayoutRecord, type ShardConfig } from '../core/config.js';
import type { MigrationRecord } from '../storage/migration-store.js';
import type { Store } from '../storage/store.js';
import type { ClusterView, LayoutAnswer } from './cluster-view.js';
import type { LayoutSync } from './layout-sync.js';
import { newMigration } from './layout-start.js';
import type { Migration } from './migration.js';
import type { Log } from '../core/log.js';

/** What a learner knows between answers: its own layout, the shard count, and the primaries found empty. */
export interface LearnerKnowledge {
  readonly layoutId: string;
  readonly shardCount: number;
  /** Primaries that answered with no keys, or still learning themselves. */
  readonly emptyPeers: ReadonlySet<string>;
}

/** What one answer teaches: keys move here from a layout, nothing moves here, or not enough yet. */
export type LearnerConclusion =
  | { readonly kind: 'keys-move-here'; readonly previous: LayoutRecord; readonly why: string }
  | { readonly kind: 'nothing-moves'; readonly why: string }
  | { readonly kind: 'keep-waiting'; readonly emptyPeers: ReadonlySet<string> };

/** What a primary still learning its layout concludes from `peer`'s answer (pure: no I/O). */
export function learnFromAnswer(known: LearnerKnowledge, peer: string, role: 'primary' | 'replica', answer: LayoutAnswer): LearnerConclusion {
  if (role !== 'primary') return { kind: 'keep-waiting', emptyPeers: known.emptyPeers };
  if (answer.layout.layoutId === known.layoutId && answer.migratingFrom) {
    return { kind: 'keys-move-here', previous: answer.migratingFrom, why: `${peer} migrates from it` };
  }
  if (answer.layout.layoutId === known.layoutId && answer.decided) return { kind: 'nothing-moves', why: `${peer} runs this layout with no migration` };
  // A peer on another layout proves nothing by itself: it may be an old node not restarted yet (the first
  // old node restarted with this layout records the migration and tells), or a newer one. Only a peer
  // that is new too, or holds no keys, has nothing that could move here.
  if (answer.decided && answer.keys > 0) return { kind: 'keep-waiting', emptyPeers: known.emptyPeers };
  const emptyPeers = new Set(known.emptyPeers).add(peer);
  if (emptyPeers.size === known.shardCount - 1) return { kind: 'nothing-moves', why: 'no other primary holds keys: a new cluster' };
  return { kind: 'keep-waiting', emptyPeers };
}

/**
 * A primary just added to the cluster, with no layout of its own: decides from its peers' answers
 * whether keys move to it (and from which layout), then records that and starts the migration.
 */
export class LayoutLearner {
  private emptyPeers: ReadonlySet<string> = new Set<string>();
  private deciding: Promise<void> | undefined;

  constructor(
    private readonly view: ClusterView,
    private readonly store: Store,
    private readonly config: Config,
    private readonly log: Log,
    private readonly migrationOf: (record: MigrationRecord) => Migration,
    /** Resolves once the node serves its keys: a migration starts only then. */
    private readonly serving: Promise<void>,
  ) {}

  async onAnswer(peer: ShardConfig, role: 'primary' | 'replica', answer: LayoutAnswer, sync: LayoutSync): Promise<void> {
    if (this.view.decided) return;
    const known = { layoutId: this.config.layoutId, shardCount: this.config.shards.length, emptyPeers: this.emptyPeers };
    const conclusion = learnFromAnswer(known, peer.name, role, answer);
    if (conclusion.kind === 'keep-waiting') this.emptyPeers = conclusion.emptyPeers;
    else await this.decide(conclusion.kind === 'keys-move-here' ? conclusion.previous : undefined, conclusion.why, sync);
  }

  /** The first batch from a previous owner also tells which layout keys move from. */
  async fromBatch(previous: LayoutRecord, sender: string): Promise<void> {
    if (!this.view.decided) await this.decide(previous, `${sender} sends keys from it`, undefined);
  }

  private decide(previous: LayoutRecord | undefined, why: string, sync: LayoutSync | undefined): Promise<void> {
    this.deciding ??= (async () => {
      const record = previous ? newMigration(previous, this.config.layoutId, Date.now()) : undefined;
      await this.store.migrations.recordLayout(layoutRecord(this.config), record);
      const migration = record ? this.migrationOf(record) : undefined;
      if (migration) void this.serving.then(() => migration.start());
      this.view.layoutDecided(migration);
      this.log.info(previous ? `joining: keys move here from layout ${previous.layoutId} (${why})` : `layout settled: nothing moves here (${why})`);
      // Tell every node about the migration, so that ones still on the old layout stop serving.
      if (record) sync?.announce();
    })();
    return this.deciding;
  }
}
