// `kvshard status`: asks every member of every shard for /status and reports each one's role, epoch, key
// count, sequence, replication lag and migration, as a table or as JSON with the same fields.

import type { ShardConfig } from '../core/config.js';
import { withAdminClient } from './admin-client.js';

/** A node's /status answer, read field by field: every field shown goes through String() or a check first. */
// biome-ignore lint/suspicious/noExplicitAny: another node's JSON, not the data path; typing every /status field here would duplicate node/.
type StatusJson = Record<string, any>;

/**
 * One member's state. The member's place in the file names it (a at `address`, b at `replica`, as its
 * data dir and launch.sh do); which role it serves is cluster state (its epoch). A member that did not
 * answer is `down`, with null for everything it would have said.
 */
export interface MemberState {
  readonly shard: string;
  readonly member: 'a' | 'b';
  readonly address: string;
  readonly state: 'up' | 'down';
  readonly role: string | null;
  readonly epoch: number | null;
  readonly keys: number | null;
  /** A primary's last sequence, a replica's applied one. */
  readonly seq: number | null;
  readonly lag_entries: number | null;
  readonly lag_seconds: number | null;
  /** How replication stands, in words: `replica connected`, `in sync`, `resyncing`, ... */
  readonly replication: string | null;
  /** The migration, in words: what is left to send and receive, or when it finished. */
  readonly migration: string | null;
  /** For a primary that became one by a failover: which, and when. */
  readonly last_failover: { readonly epoch: number; readonly kind: string; readonly at: string } | null;
  /** With a coordinator: whether the member holds its shard's key, and how long its lease surely lives. */
  readonly lease: { readonly holds_key: boolean; readonly remaining_ms: number; readonly waiting: string | null } | null;
}

function numberOrNull(value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

/** One cell for a node's migration: what is left to send and receive, or when it finished. */
function migrationSummary(s: StatusJson): string {
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

function replicationSummary(s: StatusJson, primary: boolean): string {
  if (s['layout']?.refusing) return 'outdated layout: restart it';
  if (primary) return `replica ${s['replication']?.state}`;
  return s['resyncing'] ? 'resyncing' : s['in_sync'] ? 'in sync' : 'waiting for primary';
}

function memberState(shard: string, member: 'a' | 'b', address: string, s: StatusJson | undefined): MemberState {
  if (s === undefined) {
    const none = { role: null, epoch: null, keys: null, seq: null, lag_entries: null, lag_seconds: null, replication: null, migration: null };
    return { shard, member, address, state: 'down', ...none, last_failover: null, lease: null };
  }
  const role = String(s['role']);
  const primary = role === 'primary';
  const epoch = s['epoch'];
  const lagFrom = primary ? s['replication'] : s;
  return {
    shard,
    member,
    address,
    state: 'up',
    role,
    epoch: numberOrNull(epoch?.['epoch']),
    keys: numberOrNull(s['keys']),
    seq: numberOrNull(primary ? s['last_seq'] : s['applied_seq']),
    lag_entries: numberOrNull(lagFrom?.['lag_entries']),
    lag_seconds: numberOrNull(lagFrom?.['lag_seconds']),
    replication: replicationSummary(s, primary),
    migration: migrationSummary(s),
    last_failover: primary && epoch?.['at'] ? { epoch: Number(epoch['epoch']), kind: String(epoch['kind']), at: String(epoch['at']) } : null,
    lease: leaseOf(s['coordinator']),
  };
}

function leaseOf(raw: unknown): MemberState['lease'] {
  if (typeof raw !== 'object' || raw === null) return null;
  const c = raw as Record<string, unknown>;
  return {
    holds_key: c['holds_key'] === true,
    remaining_ms: numberOrNull(c['lease_remaining_ms']) ?? 0,
    waiting: typeof c['waiting'] === 'string' ? c['waiting'] : null,
  };
}

/** Every member's state, in the order of `shards`, a before b. */
export async function clusterStatus(shards: readonly ShardConfig[]): Promise<MemberState[]> {
  const members = shards.flatMap(
    (s) =>
      [
        [s.name, 'a', s.address],
        [s.name, 'b', s.replica],
      ] as const,
  );
  const replies = await withAdminClient(undefined, (client) =>
    Promise.all(
      members.map(([, , address]) =>
        client.get<StatusJson>(address, '/status').then(
          (data) => (typeof data === 'object' && data !== null ? data : undefined),
          () => undefined,
        ),
      ),
    ),
  );
  return members.map(([shard, member, address], i) => memberState(shard, member, address, replies[i]));
}

const cell = (value: number | string | null, missing = '?') => (value === null ? missing : String(value));

/** The status table: one row per member, then the last failover of each shard whose primary has one. */
export function statusTable(members: readonly MemberState[]): string {
  const rows = [['SHARD', 'MEMBER', 'ADDRESS', 'ROLE', 'EPOCH', 'STATE', 'KEYS', 'SEQ', 'LAG', 'LAG_S', 'REPLICATION', 'MIGRATION']];
  for (const m of members) {
    if (m.state === 'down') {
      rows.push([m.shard, m.member, m.address, '-', '-', 'down', '-', '-', '-', '-', '-', '-']);
      continue;
    }
    const lagSeconds = m.lag_seconds === null ? '?' : m.lag_seconds.toFixed(1);
    rows.push([
      m.shard,
      m.member,
      m.address,
      cell(m.role),
      cell(m.epoch),
      'up',
      cell(m.keys),
      cell(m.seq),
      cell(m.lag_entries),
      lagSeconds,
      cell(m.replication),
      cell(m.migration),
    ]);
  }
  const failovers = members.flatMap((m) => {
    const lease = m.lease?.holds_key ? ` (holds its key in etcd, lease ${(m.lease.remaining_ms / 1000).toFixed(1)} s)` : '';
    const waits = m.lease?.waiting ? [`${m.shard}: ${m.address} does not campaign: ${m.lease.waiting}`] : [];
    if (m.last_failover === null) return waits;
    return [`${m.shard}: primary ${m.address} since epoch ${m.last_failover.epoch}: ${m.last_failover.kind} at ${m.last_failover.at}${lease}`, ...waits];
  });
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  const table = rows.map((r) =>
    r
      .map((text, c) => text.padEnd(widths[c]!))
      .join('  ')
      .trimEnd(),
  );
  return failovers.length > 0 ? `${table.join('\n')}\n\nlast failovers:\n${failovers.join('\n')}` : table.join('\n');
}
