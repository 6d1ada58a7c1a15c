// The cluster map a routing client keeps (GET /cluster, docs/api.md) and the routing it computes from
// it: key -> slot -> shard, with the same pure functions the nodes use.

import { keySlot, slotTable } from '../core/slots.js';
import { slotCount } from '../core/limits.js';
import { KvClientError } from './errors.js';

/** The map format this client reads. */
export const clusterMapVersion = 1;

export interface MapShard {
  readonly name: string;
  readonly idx: number;
  /** The shard's two members as sharding.toml lists them (address, then replica). */
  readonly members: readonly [string, string];
  /** Its primary now (the member the current epoch names). */
  readonly primary: string;
  /** Its other member, a read-only replica. */
  readonly replica: string;
  readonly epoch: number;
}

/** What GET /cluster answers (version 1). */
export interface ClusterMap {
  readonly version: 1;
  readonly layout_id: string;
  readonly slots: number;
  readonly slot_assignment: 'jump';
  /** The node that answered. */
  readonly node: { readonly shard: string; readonly role: string; readonly address: string };
  readonly shards: readonly MapShard[];
  /** null when no slots are moving to the answering node's shard. */
  readonly migration: {
    readonly from_layout: string;
    readonly to_layout: string;
    readonly previous_shards: readonly { readonly name: string; readonly idx: number; readonly members: readonly [string, string] }[];
    readonly moving_here: readonly { readonly from: number; readonly to: number; readonly previous_owner: string }[];
  } | null;
}

function badMap(node: string, why: string): KvClientError {
  return new KvClientError({ code: 'bad_answer', message: `${node} answered /cluster with a map this client cannot use: ${why}`, node });
}

/** Checks a /cluster answer enough to route by it. */
export function checkMap(raw: unknown, node: string): ClusterMap {
  const map = raw as ClusterMap;
  if (typeof map !== 'object' || map === null) throw badMap(node, 'not a JSON object');
  if (map.version !== clusterMapVersion) throw badMap(node, `version ${JSON.stringify(map.version)}, this client reads version ${clusterMapVersion}`);
  if (map.slots !== slotCount || map.slot_assignment !== 'jump') throw badMap(node, 'an unknown slot assignment');
  if (!Array.isArray(map.shards) || map.shards.length === 0) throw badMap(node, 'no shards');
  map.shards.forEach((s, i) => {
    if (s.idx !== i || typeof s.primary !== 'string' || typeof s.replica !== 'string' || !Number.isInteger(s.epoch))
      throw badMap(node, `shard ${i} is malformed`);
  });
  return map;
}

/**
 * The newer of two views of one layout, shard by shard: nodes learn a failover's epoch within moments of
 * each other, so a map fetched from a node that has not yet learned one must not undo it.
 */
export function mergeMaps(current: ClusterMap | undefined, fetched: ClusterMap): ClusterMap {
  if (current === undefined || current.layout_id !== fetched.layout_id) return fetched;
  const shards = fetched.shards.map((s, i) => (current.shards[i]!.epoch > s.epoch ? current.shards[i]! : s));
  return { ...fetched, shards };
}

/** A map with the table that routes slots by it. */
export class Routes {
  private readonly owners: Uint16Array;

  constructor(readonly map: ClusterMap) {
    this.owners = slotTable(map.shards.length);
  }

  /** The shard that owns `slot` in this map: during a migration its new owner, which the nodes also ask first. */
  shardOfSlot(slot: number): MapShard {
    return this.map.shards[this.owners[slot]!]!;
  }

  /** Every address the map names, for fetching the map again when the first endpoints are gone. */
  addresses(): string[] {
    return this.map.shards.flatMap((s) => s.members);
  }
}

/** The slot of a key's UTF-8 bytes (Redis Cluster's CRC16 with {hash tags}). */
export { keySlot };
