// `kvshard verify`: compares each replica's data with its primary's by slot-range digests, through the
// admin client.

import type { ShardConfig } from '../core/config.js';
import { slotCount } from '../core/limits.js';
import { digestPath } from '../replication/replication-protocol.js';
import type { SlotRangeDigest } from '../storage/snapshot.js';
import { adminError, type AdminClient, withAdminClient } from './admin-client.js';
import { type CommandError, exitStatus } from './exit-status.js';

/** First pass: this many slot ranges; a differing range is then narrowed to single slots. */
const digestBuckets = 64;

async function digests(client: AdminClient, address: string, from: number, to: number, buckets: number): Promise<SlotRangeDigest[]> {
  return (await client.get<{ ranges: SlotRangeDigest[] }>(address, digestPath, { params: { from, to, buckets } })).ranges;
}

export type Comparison =
  | { readonly equal: true; readonly keys: number }
  | { readonly equal: false; readonly slot: number; readonly primaryKeys: number; readonly replicaKeys: number };

/** Compares a replica's data with its primary's; on a difference names the first differing slot. */
export async function compareReplica(primary: string, replica: string, token: string): Promise<Comparison> {
  return withAdminClient(token, async (client) => {
    const [p, r] = await Promise.all([digests(client, primary, 0, slotCount - 1, digestBuckets), digests(client, replica, 0, slotCount - 1, digestBuckets)]);
    const differing = p.findIndex((range, i) => range.digest !== r[i]!.digest);
    if (differing === -1) return { equal: true, keys: p.reduce((n, range) => n + range.keys, 0) };
    const { from, to } = p[differing]!;
    const [ps, rs] = await Promise.all([digests(client, primary, from, to, to - from + 1), digests(client, replica, from, to, to - from + 1)]);
    const i = ps.findIndex((slot, j) => slot.digest !== rs[j]!.digest);
    return { equal: false, slot: ps[i]!.from, primaryKeys: ps[i]!.keys, replicaKeys: rs[i]!.keys };
  });
}

/** One shard's verdict: its comparison, or why its members could not be compared. */
export interface ShardVerdict {
  readonly shard: string;
  /** Its members as the config lists them: a (address), b (replica). */
  readonly members: readonly [string, string];
  readonly comparison: Comparison | undefined;
  readonly error: CommandError | undefined;
}

/** `kvshard verify`: compares every shard's members, one shard after the other. */
export async function verifyShards(shards: readonly ShardConfig[], token: string): Promise<ShardVerdict[]> {
  const verdicts: ShardVerdict[] = [];
  for (const shard of shards) {
    const members = [shard.address, shard.replica] as const;
    try {
      verdicts.push({ shard: shard.name, members, comparison: await compareReplica(shard.address, shard.replica, token), error: undefined });
    } catch (err) {
      verdicts.push({ shard: shard.name, members, comparison: undefined, error: adminError(err) });
    }
  }
  return verdicts;
}

/** A verdict as the line `kvshard verify` prints. */
export function verdictLine(v: ShardVerdict): string {
  const c = v.comparison;
  if (c === undefined) return `${v.shard}: cannot compare: ${v.error!.code}: ${v.error!.message}`;
  if (c.equal) return `${v.shard}: equal (${c.keys} keys)`;
  return `${v.shard}: DIFFERENT: first differing slot ${c.slot} (primary has ${c.primaryKeys} keys there, replica ${c.replicaKeys})`;
}

/** A verdict as JSON, with the names the HTTP API uses. */
export function verdictJson(v: ShardVerdict): Record<string, unknown> {
  const c = v.comparison;
  const base = { shard: v.shard, members: v.members };
  if (c === undefined) return { ...base, equal: null, error: { code: v.error!.code, message: v.error!.message } };
  if (c.equal) return { ...base, equal: true, keys: c.keys };
  return { ...base, equal: false, slot: c.slot, primary_keys: c.primaryKeys, replica_keys: c.replicaKeys };
}

/**
 * The verdicts' exit status: a shard that could not be compared decides it first (unauthorized, else
 * unreachable), since the check is then incomplete; then a difference.
 */
export function verdictsExit(verdicts: readonly ShardVerdict[]): number {
  const errors = verdicts.flatMap((v) => (v.error === undefined ? [] : [v.error.exit]));
  if (errors.length > 0) return errors.includes(exitStatus.unauthorized) ? exitStatus.unauthorized : Math.max(...errors);
  return verdicts.every((v) => v.comparison?.equal) ? exitStatus.ok : exitStatus.no;
}
