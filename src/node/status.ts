// What GET /status shows for each role, beside the node's shard, role and address (see docs/design.md).

import type { Config } from '../core/config.js';
import { primarySilenceMaxMs } from '../core/limits.js';
import type { ClusterView } from '../cluster/cluster-view.js';
import type { PrimaryRecovery } from '../replication/primary-recovery.js';
import type { ReplicaProgress } from '../replication/replication-receiver.js';
import type { ReplicationSender } from '../replication/replication-sender.js';
import type { Store } from '../storage/store.js';

/** Layout and migration state, for /status. */
function layoutStatus(view: ClusterView): Record<string, unknown> {
  return {
    layout: { decided: view.decided, refusing: view.refusal() ?? null },
    migration: view.migration?.status() ?? null,
  };
}

/** A drain's /status fields: what it still holds and how its keys move out. */
export function drainStatus(store: Store, config: Config, view: ClusterView): () => Record<string, unknown> {
  return () => ({ keys: store.count(), layout_id: config.layoutId, ...layoutStatus(view) });
}

/** A primary's /status fields: its data, its replication log and what its replica has of it. */
export function primaryStatus(
  store: Store,
  sender: ReplicationSender,
  recovery: PrimaryRecovery,
  config: Config,
  view: ClusterView,
): () => Record<string, unknown> {
  const log = store.log!;
  return () => ({
    keys: store.count(),
    layout_id: config.layoutId,
    ...layoutStatus(view),
    recovery: recovery.status(),
    dataset_id: store.dataset.isNewPrimary() ? null : store.dataset.datasetId(),
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

/** A replica's /status fields: how far it has applied its primary's log and whether it is in sync. */
export function replicaStatus(store: Store, progress: ReplicaProgress, config: Config, view: ClusterView): () => Record<string, unknown> {
  return () => {
    const state = store.dataset.replicaState();
    const lagEntries = Math.max(0, progress.primarySeq - state.appliedSeq);
    return {
      keys: store.count(),
      layout_id: config.layoutId,
      layout: { refusing: view.refusal() ?? null, primary_migrating: view.primaryMigrating ?? null },
      dataset_id: state.datasetId ?? null,
      applied_seq: state.appliedSeq,
      primary_seq: progress.primarySeq,
      lag_entries: lagEntries,
      lag_seconds: lagEntries === 0 ? 0 : progress.lastAppliedTs ? Math.max(0, (Date.now() - progress.lastAppliedTs) / 1000) : null,
      // In sync: a complete copy, and the primary heard from lately (a silent primary may be taking writes
      // this replica does not see, or be gone).
      in_sync: store.dataset.replicaComplete() && progress.lastContactAt > 0 && Date.now() - progress.lastContactAt <= primarySilenceMaxMs,
      complete: store.dataset.replicaComplete(),
      primary_silence_max_ms: primarySilenceMaxMs,
      resyncing: state.resyncId !== undefined,
      resyncs: progress.resyncs,
      resync_refused: progress.resyncRefused,
      last_contact_ms_ago: progress.lastContactAt ? Date.now() - progress.lastContactAt : null,
    };
  };
}
