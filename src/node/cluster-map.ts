// GET /cluster: the map a routing client needs to send each request straight to its key's node (see
// docs/api.md). Open like /health: it holds addresses and epochs, no secret.

import type { IncomingMessage, ServerResponse } from 'node:http';
import express, { type Router } from 'express';
import type { Config, ShardConfig } from '../core/config.js';
import { sendJson } from '../core/http-reply.js';
import { slotCount } from '../core/limits.js';
import type { ClusterView } from '../cluster/cluster-view.js';
import { allowMethods, type NodeInfo } from '../server/http-api.js';

/** The map's format version: a client refuses a map whose version it does not know. */
export const clusterMapVersion = 1;

interface MovingRange {
  readonly from: number;
  readonly to: number;
  readonly previous_owner: string;
}

/** Slots still moving to this node's shard, as ranges with one previous owner each. */
function movingHere(view: ClusterView): MovingRange[] {
  const migration = view.migration;
  if (migration === undefined || !migration.active()) return [];
  const ranges: MovingRange[] = [];
  let open: { from: number; to: number; previous_owner: string } | undefined;
  for (let slot = 0; slot < slotCount; slot++) {
    const previous = migration.incomingPending(slot) ? migration.previousOwner(slot).name : undefined;
    if (open !== undefined && previous === open.previous_owner && slot === open.to + 1) {
      open.to = slot;
      continue;
    }
    if (open !== undefined) ranges.push(open);
    open = previous === undefined ? undefined : { from: slot, to: slot, previous_owner: previous };
  }
  if (open !== undefined) ranges.push(open);
  return ranges;
}

const members = (s: ShardConfig) => [s.address, s.replica];

/** The map as this node knows it now: its config's layout with each shard's current primary and epoch. */
export function clusterMap(config: Config, view: ClusterView, info: NodeInfo): Record<string, unknown> {
  const migration = view.migration;
  return {
    version: clusterMapVersion,
    layout_id: config.layoutId,
    slots: slotCount,
    // slot = CRC16(key or its {hash tag}) mod 16384; shard idx = jump consistent hash of the slot over the shard count.
    slot_assignment: 'jump',
    node: { shard: info.shard, role: info.role, address: info.address },
    shards: config.shards.map((listed) => {
      const now = view.shardNow(listed.idx);
      return {
        name: listed.name,
        idx: listed.idx,
        members: members(listed),
        primary: now.address,
        replica: now.replica,
        epoch: view.epochOf(listed.name).epoch,
      };
    }),
    migration:
      migration === undefined || !migration.active()
        ? null
        : {
            from_layout: migration.previous.layoutId,
            to_layout: config.layoutId,
            previous_shards: migration.previous.shards.map((s) => ({ name: s.name, idx: s.idx, members: members(s) })),
            moving_here: movingHere(view),
          },
  };
}

export function clusterMapRouter(config: Config, view: ClusterView, info: NodeInfo): Router {
  const router = express.Router({ caseSensitive: true });
  allowMethods(router, '/cluster', 'GET', 'HEAD');
  router.get('/cluster', (_req: IncomingMessage, res: ServerResponse) => sendJson(res, 200, clusterMap(config, view, info)));
  return router;
}
