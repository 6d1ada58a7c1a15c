// GET /metrics: the node in Prometheus's text format, through prom-client. Counts on the request path
// (durations, forwards, group commits) are kept by their own parts in typed arrays (core/histogram.ts)
// and turned into series here when Prometheus scrapes; gauges are read from the same state /status
// shows, once per scrape. Every label comes from a fixed set (route names, status classes, roles,
// error codes, outcomes) or from the config (shard names), so the number of series is bounded.

import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import express, { type Router } from 'express';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { collectDefaultMetrics, Registry, type Metric } from 'prom-client';
import type { Config } from '../core/config.js';
import type { Histogram } from '../core/histogram.js';
import { sendJson } from '../core/http-reply.js';
import type { ClusterView } from '../cluster/cluster-view.js';
import { forwardOutcomes, type Forwarder } from '../peer/forwarder.js';
import { allowMethods, tokenChecker } from '../server/http-api.js';
import { roleNames, type RequestStats } from '../server/request-stats.js';
import type { Store } from '../storage/store.js';
import { UnauthorizedError } from '../core/errors.js';

/** kvshard's version, for kvshard_build_info. */
export const version: string = (() => {
  try {
    const pkg = JSON.parse(readPackageJson()) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
})();

function readPackageJson(): string {
  // dist/node/metrics.js and src/node/metrics.ts both sit two levels below package.json.
  return readFileSync(new URL('../../package.json', import.meta.url), 'utf8');
}

export interface MetricsSources {
  readonly config: Config;
  /** The node's shard and its role now. */
  readonly info: { readonly shard: string; readonly role: string };
  /** The node's /status fields (its role's, epochs and rollbacks). */
  readonly status: () => Record<string, unknown>;
  /** Request bodies held, answers unsent, and refusals for them. */
  readonly requestStatus: () => Record<string, number>;
  readonly requests: RequestStats;
  readonly store: Store;
  readonly forwarder: Forwarder;
  readonly view: ClusterView;
}

type Labels = Record<string, string | number>;
interface Sample {
  readonly value: number;
  readonly labels?: Labels;
  readonly metricName?: string;
}

/** A metric whose samples are computed when it is scraped. */
function computed(registry: Registry, name: string, help: string, type: 'gauge' | 'counter' | 'histogram', samples: () => Sample[]): void {
  const metric = {
    name,
    help,
    type,
    aggregator: 'sum',
    get: async () => ({ name, help, type, aggregator: 'sum', values: samples() }),
  };
  registry.registerMetric(metric as unknown as Metric);
}

/** The `_bucket`, `_sum` and `_count` series of one histogram's labelled cell. */
function histogramSamples(name: string, h: Histogram, labels: Labels): Sample[] {
  const out: Sample[] = [];
  const cumulative = h.cumulative();
  for (const [i, bound] of h.bounds.entries()) out.push({ metricName: `${name}_bucket`, labels: { ...labels, le: bound }, value: cumulative[i]! });
  out.push({ metricName: `${name}_bucket`, labels: { ...labels, le: '+Inf' }, value: cumulative[h.bounds.length]! });
  out.push({ metricName: `${name}_sum`, labels, value: h.sum });
  out.push({ metricName: `${name}_count`, labels, value: h.count });
  return out;
}

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const rec = (v: unknown): Record<string, unknown> => (typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : {});

/** A gauge of one value read from the scrape's status snapshot; no series while the value is unknown. */
function one(value: number | boolean | undefined): Sample[] {
  if (value === undefined) return [];
  return [{ value: typeof value === 'boolean' ? Number(value) : value }];
}

export function metricsRegistry(sources: MetricsSources): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'kvshard_' });
  // prom-client names these gauges with a _total suffix, which Prometheus keeps for counters (promtool
  // flags them); the same counts remain by type in kvshard_nodejs_active_handles, _requests and _resources.
  for (const name of ['active_handles', 'active_requests', 'active_resources']) registry.removeSingleMetric(`kvshard_nodejs_${name}_total`);
  // One /status snapshot per scrape: every gauge reads the same moment.
  let snapshot: { at: number; status: Record<string, unknown> } | undefined;
  const status = (): Record<string, unknown> => {
    const now = Date.now();
    if (snapshot === undefined || now - snapshot.at > 100) snapshot = { at: now, status: sources.status() };
    return snapshot.status;
  };
  requestMetrics(registry, sources);
  dataMetrics(registry, sources, status);
  replicationMetrics(registry, sources, status);
  clusterMetrics(registry, sources, status);
  return registry;
}

/** Requests: their durations, error answers, forwards, and the bounds that refuse them. */
function requestMetrics(registry: Registry, sources: MetricsSources): void {
  const { forwarder, requests } = sources;
  computed(registry, 'kvshard_build_info', 'kvshard version and Node.js version; always 1.', 'gauge', () => [
    { value: 1, labels: { version, node_version: process.version } },
  ]);
  computed(registry, 'kvshard_http_request_duration_seconds', 'Time from parsing a request to writing its answer.', 'histogram', () =>
    [...requests.entries()].flatMap((c) =>
      histogramSamples('kvshard_http_request_duration_seconds', c.durations, { route: c.route, status_class: c.statusClass, role: c.role }),
    ),
  );
  computed(registry, 'kvshard_http_errors_total', 'Error answers, by their error code.', 'counter', () =>
    [...requests.errors].map(([code, value]) => ({ value, labels: { code } })),
  );
  computed(registry, 'kvshard_requests_overloaded_total', 'Requests refused with 503 overloaded (body, answer or pipelining bounds).', 'counter', () => [
    { value: requests.errors.get('overloaded') ?? 0 },
  ]);
  computed(registry, 'kvshard_request_body_bytes_in_flight', 'Bytes of client request bodies held now.', 'gauge', () =>
    one(sources.requestStatus()['body_bytes_in_flight']),
  );
  computed(registry, 'kvshard_reply_bytes_unsent', 'Bytes of large answers written but not yet read by their clients.', 'gauge', () =>
    one(sources.requestStatus()['reply_bytes_unsent']),
  );
  computed(registry, 'kvshard_forwarded_requests_total', 'Requests forwarded to the shard that owns the key, by target shard and outcome.', 'counter', () =>
    [...forwarder.outcomes].flatMap(([shard, counts]) => forwardOutcomes.map((outcome) => ({ value: counts[outcome], labels: { shard, outcome } }))),
  );
}

/** The data this node holds and how it commits it. */
function dataMetrics(registry: Registry, sources: MetricsSources, status: () => Record<string, unknown>): void {
  const { store } = sources;
  computed(registry, 'kvshard_group_commit_duration_seconds', 'Time from the first write of a group commit to its fsync.', 'histogram', () =>
    histogramSamples('kvshard_group_commit_duration_seconds', store.commitStats.seconds, {}),
  );
  computed(registry, 'kvshard_group_commit_writes', 'Writes made durable by one group commit.', 'histogram', () =>
    histogramSamples('kvshard_group_commit_writes', store.commitStats.writes, {}),
  );
  computed(registry, 'kvshard_keys', 'Keys this node holds.', 'gauge', () => one(store.count()));
  computed(registry, 'kvshard_lmdb_file_bytes', "Size of the node's LMDB data file.", 'gauge', () => {
    try {
      return one(statSync(join(store.path, 'data.mdb')).size);
    } catch {
      return [];
    }
  });
  computed(
    registry,
    'kvshard_rollback_entries',
    "Writes in this node's rollback files (acknowledged by it as primary, not kept by the cluster).",
    'gauge',
    () => one(num(rec(status()['rollbacks'])['entries'])),
  );
}

/** Epochs, roles and failovers, and the migration of slots after a resize. */
function clusterMetrics(registry: Registry, sources: MetricsSources, status: () => Record<string, unknown>): void {
  const { config, view } = sources;
  const migration = () => rec(status()['migration']);
  computed(registry, 'kvshard_role', 'The role this node serves now: 1 for its role, 0 for the others.', 'gauge', () =>
    roleNames.map((role) => ({ value: Number(sources.info.role === role), labels: { role } })),
  );
  computed(registry, 'kvshard_epoch', "Each shard's epoch as this node knows it (failovers raise it).", 'gauge', () =>
    Object.entries(view.epochs()).map(([shard, e]) => ({ value: e.epoch, labels: { shard } })),
  );
  computed(registry, 'kvshard_failovers_seen_total', 'Epoch changes this node has learned of since it started, by shard.', 'counter', () =>
    config.shards.map((s) => ({ value: view.epochChanges.get(s.name) ?? 0, labels: { shard: s.name } })),
  );
  computed(registry, 'kvshard_primary_info', "Each shard's primary now and how its epoch began (initial, switchover, forced, lease_expired).", 'gauge', () =>
    Object.entries(view.epochs()).map(([shard, e]) => ({ value: 1, labels: { shard, primary: e.primary, kind: e.kind } })),
  );
  computed(registry, 'kvshard_epoch_started_timestamp_seconds', "When each shard's epoch began (none for the initial one).", 'gauge', () =>
    Object.entries(view.epochs()).flatMap(([shard, e]) => (e.at === null ? [] : [{ value: Date.parse(e.at) / 1000, labels: { shard } }])),
  );
  const coordinator = () => status()['coordinator'] as Record<string, unknown> | undefined;
  computed(registry, 'kvshard_coordinator_holds_key', "With a coordinator: whether this member holds its shard's key in etcd.", 'gauge', () => {
    const c = coordinator();
    return c === undefined ? [] : one(c['holds_key'] === true);
  });
  computed(
    registry,
    'kvshard_lease_remaining_seconds',
    'With a coordinator: how long this primary may still acknowledge writes without renewing its lease.',
    'gauge',
    () => {
      const c = coordinator();
      const ms = num(c?.['lease_remaining_ms']);
      return ms === undefined ? [] : one(ms / 1000);
    },
  );
  migrationMetrics(registry, migration);
}

/** Replication: a primary's view of its replica, or a replica's of its primary. */
function replicationMetrics(registry: Registry, sources: MetricsSources, status: () => Record<string, unknown>): void {
  const isPrimary = () => sources.info.role === 'primary';
  const replication = () => (isPrimary() ? rec(status()['replication']) : status());
  computed(registry, 'kvshard_replication_last_seq', "The primary's last replication sequence (on a replica: the last it has heard of).", 'gauge', () =>
    one(num(isPrimary() ? status()['last_seq'] : status()['primary_seq'])),
  );
  computed(registry, 'kvshard_replication_applied_seq', 'The last sequence the replica has applied (on a primary: as its replica reported).', 'gauge', () =>
    one(num(replication()['applied_seq'])),
  );
  computed(registry, 'kvshard_replication_lag_entries', 'Writes the replica has yet to apply.', 'gauge', () => one(num(replication()['lag_entries'])));
  computed(registry, 'kvshard_replication_lag_seconds', 'Age of the oldest write the replica has yet to apply.', 'gauge', () =>
    one(num(replication()['lag_seconds'])),
  );
  computed(registry, 'kvshard_replication_resyncs_total', 'Full resyncs: sent by a primary, received by a replica, since the node started.', 'counter', () =>
    one(num(replication()['resyncs'])),
  );
  computed(registry, 'kvshard_replication_connected', 'Whether replication flows: the primary reaches its replica, or the replica is in sync.', 'gauge', () => {
    const r = replication();
    if (sources.info.role === 'drain') return [];
    return one(isPrimary() ? r['reachable'] === true : r['in_sync'] === true);
  });
}

/** A resize's migration as this node runs it: slots and keys to move and moved. */
function migrationMetrics(registry: Registry, migration: () => Record<string, unknown>): void {
  computed(registry, 'kvshard_migration_active', 'Whether this node is moving slots after a resize.', 'gauge', () => one(migration()['state'] === 'migrating'));
  const migrationGauge = (name: string, field: string, help: string, type: 'gauge' | 'counter' = 'gauge') =>
    computed(registry, name, help, type, () => one(num(migration()[field])));
  migrationGauge('kvshard_migration_slots_to_send', 'slots_to_send', 'Slots this node sends to their new owners in the current migration.');
  migrationGauge('kvshard_migration_slots_sent', 'slots_sent', 'Slots sent so far in the current migration.');
  migrationGauge('kvshard_migration_slots_to_receive', 'slots_to_receive', 'Slots this node receives in the current migration.');
  migrationGauge('kvshard_migration_slots_received', 'slots_received', 'Slots received so far in the current migration.');
  migrationGauge('kvshard_migration_keys_sent_total', 'keys_sent', 'Keys sent to their new owners in the current migration.', 'counter');
  migrationGauge('kvshard_migration_keys_received_total', 'keys_received', 'Keys received in the current migration.', 'counter');
}

/**
 * GET /metrics. Open like /health (it holds no secret), or, when the config sets metrics.token, only
 * with `Authorization: Bearer <token>`, which is what Prometheus's `authorization` setting sends.
 */
export function metricsRouter(registry: Registry, token: string | undefined): Router {
  const router = express.Router({ caseSensitive: true });
  const isToken = token === undefined ? undefined : tokenChecker(token);
  allowMethods(router, '/metrics', 'GET', 'HEAD');
  router.get('/metrics', (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => {
    if (isToken && !isToken(bearerToken(req))) return next(new UnauthorizedError('/metrics needs Authorization: Bearer <metrics.token>'));
    registry.metrics().then(
      (text) => {
        res.writeHead(200, { 'content-type': registry.contentType, 'content-length': Buffer.byteLength(text) });
        res.end(req.method === 'HEAD' ? undefined : text);
      },
      (err: unknown) => next(err),
    );
  });
  return router;
}

/** The token of an `Authorization: Bearer <token>` header, or ''. */
export function bearerToken(req: IncomingMessage): string {
  const header = req.headers.authorization ?? '';
  return header.startsWith('Bearer ') ? header.slice(7).trim() : '';
}

/** The answer while metrics are off in the config. */
export function metricsOffRouter(): Router {
  const router = express.Router({ caseSensitive: true });
  router.all('/metrics', (_req: IncomingMessage, res: ServerResponse) => {
    sendJson(res, 404, { error: 'metrics_disabled', message: 'metrics are off: set [metrics] enabled = true in the config' });
  });
  return router;
}
