// The replica's side of replication: the internal endpoints the primary pushes to. Only the primary,
// holding the cluster secret, reaches them (http-api.ts checks the token before routing here).

import type { ServerResponse } from 'node:http';
import express, { type Router } from 'express';
import { sendJson, type BodyRequest } from './http-api.js';
import { internalBodyBytesMax } from './limits.js';
import { decodeReplicate, decodeResync, replicatePath, resyncPath, type ReplicaReply } from './replication-protocol.js';
import type { ClusterView } from './layout-sync.js';
import type { Store } from './store.js';

export interface ReplicaProgress {
  primarySeq: number;
  lastContactAt: number;
  /** Commit time on the primary of the newest applied entry. */
  lastAppliedTs: number;
  resyncs: number;
}

function answer(res: ServerResponse, reply: ReplicaReply): void {
  sendJson(res, reply.error ? 409 : 200, reply);
}

export function replicaRouter(store: Store, progress: ReplicaProgress, view: ClusterView, log: (message: string) => void): Router {
  const router = express.Router();
  const raw = express.raw({ type: () => true, limit: internalBodyBytesMax });

  router.post(replicatePath, raw, async (req: BodyRequest, res: ServerResponse) => {
    const message = decodeReplicate(req.body as Buffer);
    notePrimaryLayout(view, message.topologyId, message.migrating, log);
    const outcome = await store.applyReplicated(message.datasetId, message.entries);
    progress.primarySeq = message.primarySeq;
    progress.lastContactAt = Date.now();
    if (outcome.ok && message.entries.length > 0 && outcome.appliedSeq >= message.entries.at(-1)!.seq) {
      progress.lastAppliedTs = message.entries.at(-1)!.ts;
    }
    answer(res, outcome.ok ? { appliedSeq: outcome.appliedSeq } : { appliedSeq: outcome.appliedSeq, error: outcome.reason });
  });

  router.post(resyncPath, raw, async (req: BodyRequest, res: ServerResponse) => {
    const message = decodeResync(req.body as Buffer);
    progress.lastContactAt = Date.now();
    switch (message.phase) {
      case 'begin':
        log(`full resync ${message.resyncId} from the primary started; reads go to the primary until it ends`);
        await store.beginResync(message.resyncId);
        answer(res, { appliedSeq: 0 });
        return;
      case 'chunk': {
        const ok = await store.applyResyncChunk(message.resyncId, message.pairs);
        answer(res, ok ? { appliedSeq: 0 } : { appliedSeq: 0, error: 'resync_aborted' });
        return;
      }
      case 'end': {
        const ok = await store.endResync(message.resyncId, message.datasetId, message.snapshotSeq, message.keyCount);
        if (ok) {
          progress.resyncs++;
          progress.primarySeq = Math.max(progress.primarySeq, message.snapshotSeq);
          log(`full resync ${message.resyncId} done: ${message.keyCount} keys at seq ${message.snapshotSeq}`);
        }
        answer(res, ok ? { appliedSeq: message.snapshotSeq } : { appliedSeq: 0, error: 'resync_aborted' });
        return;
      }
    }
  });
  return router;
}

/**
 * A replica serves reads only while its primary runs the same layout: otherwise the primary may be
 * moving keys this replica's config still routes here. Whether the primary has keys moving in decides
 * whether a local miss is final.
 */
function notePrimaryLayout(view: ClusterView, topologyId: string, migrating: boolean, log: (message: string) => void): void {
  view.primaryMigrating = migrating;
  const mismatch =
    topologyId === view.config.topologyId
      ? undefined
      : `this replica runs topology ${view.config.topologyId} (${view.config.file}) but its primary runs ${topologyId}; ` +
        'restart it with the same sharding.toml as its primary';
  if (mismatch !== view.primaryMismatch) log(mismatch ? `refusing reads: ${mismatch}` : 'primary runs the same layout again; serving reads');
  view.primaryMismatch = mismatch;
}
