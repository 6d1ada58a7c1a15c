// The cluster map a routing client keeps (GET /cluster, docs/api.md) and the routing it computes from
// it: key -> slot -> shard, with the same pure functions the nodes use.

import { keySlot, slotTable } from '../core/slots.js';
import { slotCount } from '../core/limits.js';
import { addressPattern } from './checks.js';
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

/** Why shard `s` (at `i`) of a map cannot be routed by, if it cannot. */
function shardProblem(s: MapShard, i: number): string | undefined {
  if (typeof s !== 'object' || s === null || s.idx !== i || typeof s.name !== 'string') return `shard ${i} is malformed`;
  if (!Array.isArray(s.members) || s.members.length !== 2 || !s.members.every((m) => typeof m === 'string' && addressPattern.test(m))) {
    return `shard ${s.name}: members must be two host:port addresses`;
  }
  if (!s.members.includes(s.primary) || !s.members.includes(s.replica) || s.primary === s.replica) {
    return `shard ${s.name}: its primary and replica must be its two members`;
  }
  if (!Number.isSafeInteger(s.epoch) || s.epoch < 1) return `shard ${s.name}: epoch must be a positive integer`;
  return undefined;
}

/**
 * Checks a /cluster answer before routing by it: every address it names is one the client may send
 * requests to, so a malformed or hostile answer is refused here rather than followed.
 */
export function checkMap(raw: unknown, node: string): ClusterMap {
  const map = raw as ClusterMap;
  if (typeof map !== 'object' || map === null) throw badMap(node, 'not a JSON object');
  if (map.version !== clusterMapVersion) throw badMap(node, `version ${JSON.stringify(map.version)}, this client reads version ${clusterMapVersion}`);
  if (map.slots !== slotCount || map.slot_assignment !== 'jump') throw badMap(node, 'an unknown slot assignment');
  if (typeof map.layout_id !== 'string' || !/^[0-9a-f]{12}$/.test(map.layout_id)) throw badMap(node, 'layout_id is not 12 hex digits');
  // Every slot belongs to a shard with a jump hash over at most slotCount shards.
  if (!Array.isArray(map.shards) || map.shards.length === 0 || map.shards.length > slotCount) throw badMap(node, `not 1 to ${slotCount} shards`);
  map.shards.forEach((s, i) => {
    const problem = shardProblem(s, i);
    if (problem !== undefined) throw badMap(node, problem);
  });
  return map;
}

/**
 * The newer of two views of one layout, shard by shard: nodes learn a failover's epoch within moments of
 * each other, so a map fetched from a node that has not yet learned one must not undo it. A map of
 * another layout replaces the current one whole.
 */
export function mergeMaps(current: ClusterMap | undefined, fetched: ClusterMap): ClusterMap {
  if (current === undefined || current.layout_id !== fetched.layout_id || current.shards.length !== fetched.shards.length) return fetched;
  const shards = fetched.shards.map((s, i) => {
    const known = current.shards[i]!;
    return known.epoch > s.epoch && known.name === s.name ? known : s;
  });
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

  /** Whether `address` is a member of a shard of this map: a moved answer is followed only there. */
  names(address: string): boolean {
    return this.map.shards.some((s) => s.members.includes(address));
  }
}

/** The slot of a key's UTF-8 bytes (Redis Cluster's CRC16 with {hash tags}). */
export { keySlot };
