// Operator tools that talk to running nodes: a cluster status table and replica verification by
// comparing slot-range digests. Used by `kvshard status` and `kvshard verify`.

import http from 'node:http';
import axios, { type AxiosInstance } from 'axios';
import type { Config } from '../core/config.js';
import { adminReplyBytesMax, adminTimeoutMs, slotCount } from '../core/limits.js';
import { tokenHeader } from '../core/wire.js';
import { digestPath } from '../replication/replication-protocol.js';
import type { SlotRangeDigest } from '../storage/snapshot.js';

/** First pass: this many slot ranges; a differing range is then narrowed to single slots. */
const digestBuckets = 64;

function adminClient(token?: string): { client: AxiosInstance; close: () => void } {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  const client = axios.create({
    httpAgent: agent,
    timeout: adminTimeoutMs,
    maxContentLength: adminReplyBytesMax,
    maxBodyLength: 0,
    maxRedirects: 0,
    proxy: false,
    responseType: 'json',
    headers: token ? { [tokenHeader]: token } : {},
  });
  return { client, close: () => agent.destroy() };
}

async function digests(client: AxiosInstance, address: string, from: number, to: number, buckets: number): Promise<SlotRangeDigest[]> {
  const res = await client.get<{ ranges: SlotRangeDigest[] }>(`http://${address}${digestPath}`, { params: { from, to, buckets } });
  return res.data.ranges;
}

export type Comparison =
  | { readonly equal: true; readonly keys: number }
  | { readonly equal: false; readonly slot: number; readonly primaryKeys: number; readonly replicaKeys: number };

/** Compares a replica's data with its primary's; on a difference names the first differing slot. */
export async function compareReplica(primary: string, replica: string, token: string): Promise<Comparison> {
  const { client, close } = adminClient(token);
  try {
    const [p, r] = await Promise.all([digests(client, primary, 0, slotCount - 1, digestBuckets), digests(client, replica, 0, slotCount - 1, digestBuckets)]);
    const differing = p.findIndex((range, i) => range.digest !== r[i]!.digest);
    if (differing === -1) return { equal: true, keys: p.reduce((n, range) => n + range.keys, 0) };
    const { from, to } = p[differing]!;
    const [ps, rs] = await Promise.all([digests(client, primary, from, to, to - from + 1), digests(client, replica, from, to, to - from + 1)]);
    const i = ps.findIndex((slot, j) => slot.digest !== rs[j]!.digest);
    return { equal: false, slot: ps[i]!.from, primaryKeys: ps[i]!.keys, replicaKeys: rs[i]!.keys };
  } finally {
    close();
  }
}

/** `kvshard verify`: one line per shard; resolves with whether every replica equals its primary. */
export async function verifyCluster(config: Config, token: string, out: (line: string) => void): Promise<boolean> {
  let allEqual = true;
  for (const shard of config.shards) {
    try {
      const result = await compareReplica(shard.address, shard.replica, token);
      if (result.equal) out(`${shard.name}: equal (${result.keys} keys)`);
      else {
        allEqual = false;
        out(`${shard.name}: DIFFERENT: first differing slot ${result.slot} (primary has ${result.primaryKeys} keys there, replica ${result.replicaKeys})`);
      }
    } catch (err) {
      allEqual = false;
      out(`${shard.name}: cannot compare: ${describeAdminError(err)}`);
    }
  }
  return allEqual;
}

/** Why an admin request failed, in the operator's words (axios names a 401 only ERR_BAD_REQUEST). */
function describeAdminError(err: unknown): string {
  if (!axios.isAxiosError(err)) return (err as Error).message;
  const status = err.response?.status;
  if (status === 401)
    return "unauthorized: the cluster token does not match the nodes' (set KV_CLUSTER_TOKEN, token in the config, or the data dir's cluster.token)";
  if (status !== undefined) return `${err.config?.url ?? 'a node'} answered ${status}: ${JSON.stringify(err.response?.data ?? '').slice(0, 200)}`;
  return err.code ?? err.message;
}

/** A node's /status answer, read field by field: every field shown goes through String() or a check first. */
// biome-ignore lint/suspicious/noExplicitAny: another node's JSON, not the data path; typing every /status field here would duplicate node/.
type StatusJson = Record<string, any>;

/** One cell for a node's migration: what is left to send and receive, or when it finished. */
export function migrationSummary(s: StatusJson): string {
  if (s['layout'] && s['layout']['decided'] === false) return 'learning layout';
  const m = s['migration'];
  if (!m) return '-';
  if (m['state'] === 'done') return `done ${String(m['finished_at']).slice(0, 19)}Z`;
  return (
    `moving: sent ${m['slots_sent']}/${m['slots_to_send']} slots (${m['keys_sent']} keys), ` +
    `received ${m['slots_received']}/${m['slots_to_receive']} (${m['keys_received']} keys)` +
    (m['last_error'] ? `; last error: ${m['last_error']}` : '')
  );
}

/**
 * One row of the status table for a member that answered. The member's place in the file names it (a
 * at `address`, b at `replica`, as its data dir and launch.sh do);
 * which role it serves is cluster state (its epoch).
 */
function statusRow(name: string, member: string, address: string, s: StatusJson): string[] {
  const role = String(s['role']);
  const epoch = s['epoch'];
  const lag = role === 'primary' ? s['replication']?.lag_entries : s['lag_entries'];
  const lagS = role === 'primary' ? s['replication']?.lag_seconds : s['lag_seconds'];
  const state = role === 'primary' ? `replica ${s['replication']?.state}` : s['resyncing'] ? 'resyncing' : s['in_sync'] ? 'in sync' : 'waiting for primary';
  const seq = role === 'primary' ? s['last_seq'] : s['applied_seq'];
  const stateCell = s['layout']?.refusing ? 'outdated layout: restart it' : state;
  return [
    name,
    member,
    address,
    role,
    epoch ? String(epoch['epoch']) : '?',
    'up',
    String(s['keys']),
    String(seq),
    String(lag ?? '?'),
    lagS == null ? '?' : Number(lagS).toFixed(1),
    stateCell,
    migrationSummary(s),
  ];
}

/** `kvshard status`: a table of every node's replication and migration state. */
export async function statusTable(config: Config): Promise<string> {
  const { client, close } = adminClient();
  const rows = [['SHARD', 'MEMBER', 'ADDRESS', 'ROLE', 'EPOCH', 'STATE', 'KEYS', 'SEQ', 'LAG', 'LAG_S', 'REPLICATION', 'MIGRATION']];
  const failovers: string[] = [];
  try {
    const nodes = config.shards.flatMap(
      (s) =>
        [
          [s.name, 'a', s.address],
          [s.name, 'b', s.replica],
        ] as const,
    );
    const replies = await Promise.all(
      nodes.map(([, , address]) =>
        client.get<StatusJson>(`http://${address}/status`).then(
          (r) => r.data,
          () => undefined,
        ),
      ),
    );
    nodes.forEach(([name, member, address], i) => {
      const s = replies[i];
      if (!s) {
        rows.push([name, member, address, '-', '-', 'down', '-', '-', '-', '-', '-', '-']);
        return;
      }
      const epoch = s['epoch'];
      if (s['role'] === 'primary' && epoch?.['at']) {
        failovers.push(`${name}: primary ${address} since epoch ${epoch['epoch']}: ${epoch['kind']} at ${epoch['at']}`);
      }
      rows.push(statusRow(name, member, address, s));
    });
  } finally {
    close();
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  const lastFailovers = failovers.length > 0 ? `\n\nlast failovers:\n${failovers.join('\n')}` : '';
  return `${rows
    .map((r) =>
      r
        .map((cell, c) => cell.padEnd(widths[c]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')}${lastFailovers}`;
}
