// sharding.toml: parsing and validation. Pure except for loadConfig(), which reads the file.
//
// The whole file is validated before anything opens LMDB or binds a port. Every problem is reported,
// each naming the file and the TOML path, and the result is frozen and passed down.

import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { basename } from 'node:path';
import { parse, TomlError } from 'smol-toml';
import {
  configBytesMax,
  logRetentionBytesDefault,
  migrationBatchKeysDefault,
  migrationBatchKeysMax,
  nodeTimeoutMsDefault,
  nodeTimeoutMsMax,
  nodeTimeoutMsMin,
  shardCountMax,
  tokenCharsMin,
} from './limits.js';
import { slotTable } from './slots.js';
import { type CoordinatorSettings, validateCoordinator } from './coordinator-config.js';

export interface ShardConfig {
  readonly name: string;
  readonly idx: number;
  /** The primary's `host:port`. */
  readonly address: string;
  /** The read-only replica's `host:port`. */
  readonly replica: string;
}

export interface Config {
  /** The file the config came from, for messages. */
  readonly file: string;
  /** Shards ordered by idx, so shards[i].idx === i. */
  readonly shards: readonly ShardConfig[];
  /**
   * A short digest of the shard list (names, indexes and addresses). Two nodes with the same layoutId
   * route every key identically; a forwarded request carries the sender's so disagreements are named.
   */
  readonly layoutId: string;
  /** slotOwners[slot] is the idx of the shard that owns the slot. */
  readonly slotOwners: Uint16Array;
  /** The cluster secret for internal endpoints, when the file sets one (KV_CLUSTER_TOKEN overrides it). */
  readonly token: string | undefined;
  /** Bytes of replication log a primary keeps for a lagging replica before it falls back to a resync. */
  readonly logRetentionBytes: number;
  /** How keys move between shards after a resize (see migration.ts). */
  readonly migration: MigrationSettings;
  /** GET /metrics and the request counting behind it. */
  readonly metrics: MetricsSettings;
  /**
   * `node_timeout_ms`: a primary that has not heard from a majority of nodes for half of this stops
   * acknowledging writes, and a node grants a forced promotion only after this long without hearing
   * from the primary, so the old primary always stops before a new one starts (Redis Cluster's
   * cluster-node-timeout). Shorter fails over sooner; longer rides out slower networks and pauses.
   */
  readonly nodeTimeoutMs: number;
  /** `[coordinator]`: etcd decides each shard's primary; undefined: operator-driven failover. */
  readonly coordinator: CoordinatorSettings | undefined;
}

export interface MetricsSettings {
  /** Whether requests are counted and /metrics answers (default true). */
  readonly enabled: boolean;
  /** When set, /metrics and /dashboard need `Authorization: Bearer <token>`; else they are open like /health. */
  readonly token: string | undefined;
}

export interface MigrationSettings {
  /** Keys per migration batch (bounded further by migrationBatchBytesMax). */
  readonly batchKeys: number;
  /** Pause between two batches of one sender, to cap the load a migration adds (0: none). */
  readonly batchPauseMs: number;
}

/** The part a process plays in its shard: its primary, its replica, or a drain (a shard removed from the config). */
export type RoleName = 'primary' | 'replica' | 'drain';

/** What a node remembers of a layout: enough to route by it and to reach its nodes. */
export interface LayoutRecord {
  readonly layoutId: string;
  readonly shards: readonly ShardConfig[];
}

export function layoutRecord(config: Config): LayoutRecord {
  return { layoutId: config.layoutId, shards: config.shards.map((s) => ({ ...s })) };
}

/** An invalid config. `problems` holds one message per problem, each starting with the file name. */
export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(problems.join('\n'));
    this.name = 'ConfigError';
  }
}

const shardKeys = new Set(['name', 'idx', 'address', 'replica']);
const topLevelKeys = new Set(['shards', 'token', 'node_timeout_ms', 'replication', 'migration', 'metrics', 'coordinator']);
const metricsKeys = new Set(['enabled', 'token']);
const replicationKeys = new Set(['log_retention_bytes']);
const migrationKeys = new Set(['batch_keys', 'batch_pause_ms']);
/** A shard's name: it becomes part of data dir, PID and log file names. */
export const shardNamePattern = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
const hostnamePattern = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** Splits `host:port` (or `[v6]:port`); returns undefined when it is not one. */
export function parseAddress(address: string): { host: string; port: number } | undefined {
  const match = /^(\[[0-9A-Fa-f:.]+\]|[^:[\]]+):(\d{1,5})$/.exec(address);
  if (!match) return undefined;
  const host = match[1]!;
  const port = Number(match[2]);
  if (port < 1 || port > 65535) return undefined;
  if (!host.startsWith('[') && !hostnamePattern.test(host)) return undefined;
  return { host: host.startsWith('[') ? host.slice(1, -1) : host, port };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date);
}

/** Validates a parsed TOML document. Throws ConfigError listing every problem found. */
export function validateConfig(doc: unknown, file: string): Config {
  const problems: string[] = [];
  const problem = (path: string, message: string) => problems.push(`${file}: ${path}: ${message}`);

  if (!isRecord(doc)) throw new ConfigError([`${file}: the document is not a table`]);
  for (const key of Object.keys(doc)) {
    if (!topLevelKeys.has(key)) problem(key, `unknown key (allowed: ${[...topLevelKeys].join(', ')})`);
  }
  const token = doc['token'];
  if (token !== undefined && (typeof token !== 'string' || token.length < tokenCharsMin)) {
    problem('token', `must be a string of at least ${tokenCharsMin} characters`);
  }
  const logRetentionBytes = validateReplication(doc['replication'], problem);
  const migration = validateMigration(doc['migration'], problem);
  const metrics = validateMetrics(doc['metrics'], problem);
  const nodeTimeoutMs = validateNodeTimeout(doc['node_timeout_ms'], problem);
  const coordinator = validateCoordinator(doc['coordinator'], problem, (text) => parseAddress(text) !== undefined);
  const rawShards = doc['shards'];
  if (rawShards === undefined) {
    problem('shards', 'missing: declare at least one [[shards]] table');
    throw new ConfigError(problems);
  }
  if (!Array.isArray(rawShards)) {
    problem('shards', 'must be an array of tables ([[shards]])');
    throw new ConfigError(problems);
  }
  if (rawShards.length === 0) problem('shards', 'is empty: declare at least one [[shards]] table');
  if (rawShards.length > shardCountMax) problem('shards', `has ${rawShards.length} entries; at most ${shardCountMax} are allowed`);

  const shards: ShardConfig[] = [];
  const positions: number[] = [];
  rawShards.forEach((raw, i) => {
    const shard = validateShard(raw, `shards[${i}]`, problem);
    if (shard) {
      shards.push(shard);
      positions.push(i);
    }
  });
  // Relations are checked among the shards that are valid on their own, whatever else is wrong, so one
  // run reports every problem.
  checkRelations(shards, positions, rawShards.length, problem);
  if (problems.length > 0) throw new ConfigError(problems);

  const ordered = [...shards].sort((a, b) => a.idx - b.idx).map((s) => Object.freeze(s));
  return Object.freeze({
    file,
    shards: Object.freeze(ordered),
    layoutId: layoutIdOf(ordered),
    slotOwners: slotTable(ordered.length),
    token: token as string | undefined,
    logRetentionBytes,
    migration,
    metrics,
    nodeTimeoutMs,
    coordinator,
  });
}

function validateNodeTimeout(raw: unknown, problem: (path: string, message: string) => void): number {
  if (raw === undefined) return nodeTimeoutMsDefault;
  if (!Number.isSafeInteger(raw) || (raw as number) < nodeTimeoutMsMin || (raw as number) > nodeTimeoutMsMax) {
    problem('node_timeout_ms', `must be an integer from ${nodeTimeoutMsMin} to ${nodeTimeoutMsMax}, got ${describe(raw)}`);
    return nodeTimeoutMsDefault;
  }
  return raw as number;
}

/** The optional `[metrics]` table: `enabled` (a boolean) and `token` (a secret of its own). */
function validateMetrics(raw: unknown, problem: (path: string, message: string) => void): MetricsSettings {
  if (raw !== undefined && !isRecord(raw)) problem('metrics', 'must be a table ([metrics])');
  const table = isRecord(raw) ? raw : {};
  for (const key of Object.keys(table)) {
    if (!metricsKeys.has(key)) problem(`metrics.${key}`, `unknown key (allowed: ${[...metricsKeys].join(', ')})`);
  }
  const enabled = table['enabled'] ?? true;
  if (typeof enabled !== 'boolean') problem('metrics.enabled', 'must be true or false');
  const token = table['token'];
  if (token !== undefined && (typeof token !== 'string' || token.length < tokenCharsMin)) {
    problem('metrics.token', `must be a string of at least ${tokenCharsMin} characters`);
  }
  return { enabled: enabled !== false, token: typeof token === 'string' ? token : undefined };
}

type IntSetting = (key: string, min: number, max: number, fallback: number) => number;

/**
 * An optional table of integer settings (`[replication]`, `[migration]`): reports a table that is not
 * one, unknown keys, and values that are not integers in range (which then take their defaults).
 */
function settingsTable(raw: unknown, name: string, allowed: ReadonlySet<string>, problem: (path: string, message: string) => void): IntSetting {
  if (raw !== undefined && !isRecord(raw)) problem(name, `must be a table ([${name}])`);
  const table = isRecord(raw) ? raw : {};
  for (const key of Object.keys(table)) {
    if (!allowed.has(key)) problem(`${name}.${key}`, `unknown key (allowed: ${[...allowed].join(', ')})`);
  }
  return (key, min, max, fallback) => {
    const value = table[key];
    if (value === undefined) return fallback;
    if (!Number.isSafeInteger(value) || (value as number) < min || (value as number) > max) {
      const range = max === Number.MAX_SAFE_INTEGER ? `of at least ${min}` : `from ${min} to ${max}`;
      problem(`${name}.${key}`, `must be an integer ${range}, got ${describe(value)}`);
      return fallback;
    }
    return value as number;
  };
}

function validateMigration(raw: unknown, problem: (path: string, message: string) => void): MigrationSettings {
  const intIn = settingsTable(raw, 'migration', migrationKeys, problem);
  return {
    batchKeys: intIn('batch_keys', 1, migrationBatchKeysMax, migrationBatchKeysDefault),
    batchPauseMs: intIn('batch_pause_ms', 0, 60_000, 0),
  };
}

function validateReplication(raw: unknown, problem: (path: string, message: string) => void): number {
  return settingsTable(raw, 'replication', replicationKeys, problem)('log_retention_bytes', 1, Number.MAX_SAFE_INTEGER, logRetentionBytesDefault);
}

function validateShard(raw: unknown, path: string, problem: (path: string, message: string) => void): ShardConfig | undefined {
  if (!isRecord(raw)) {
    problem(path, 'must be a table');
    return undefined;
  }
  let valid = true;
  const fail = (key: string, message: string) => {
    problem(`${path}.${key}`, message);
    valid = false;
  };
  for (const key of Object.keys(raw)) {
    if (!shardKeys.has(key)) fail(key, `unknown key (allowed: ${[...shardKeys].join(', ')})`);
  }
  const { name, idx, address, replica } = raw;
  if (name === undefined) fail('name', 'missing');
  else if (typeof name !== 'string') fail('name', `must be a string, got ${describe(name)}`);
  else if (!shardNamePattern.test(name)) fail('name', `"${name}" must be 1-64 letters, digits, '-' or '_', starting with a letter or digit`);
  if (idx === undefined) fail('idx', 'missing');
  else if (typeof idx !== 'bigint' && !(typeof idx === 'number' && Number.isInteger(idx))) fail('idx', `must be an integer, got ${describe(idx)}`);
  for (const [key, value] of [
    ['address', address],
    ['replica', replica],
  ] as const) {
    if (value === undefined) fail(key, 'missing');
    else if (typeof value !== 'string') fail(key, `must be a "host:port" string, got ${describe(value)}`);
    else if (!parseAddress(value)) fail(key, `"${value}" is not host:port with a port from 1 to 65535`);
  }
  if (!valid) return undefined;
  return { name: name as string, idx: Number(idx), address: address as string, replica: replica as string };
}

/**
 * Names, indexes and addresses must be unique and indexes exactly 0..total-1. `positions[i]` is where
 * shards[i] stands in the file (shards that failed their own checks are left out of `shards`).
 */
function checkRelations(shards: ShardConfig[], positions: number[], total: number, problem: (path: string, message: string) => void): void {
  const names = new Map<string, number>();
  const idxs = new Map<number, number>();
  const addresses = new Map<string, string>();
  shards.forEach((shard, n) => {
    const i = positions[n]!;
    const firstName = names.get(shard.name);
    if (firstName !== undefined) problem(`shards[${i}].name`, `duplicate of shards[${firstName}].name ("${shard.name}")`);
    else names.set(shard.name, i);
    const firstIdx = idxs.get(shard.idx);
    if (firstIdx !== undefined) problem(`shards[${i}].idx`, `duplicate of shards[${firstIdx}].idx (${shard.idx})`);
    else idxs.set(shard.idx, i);
    if (shard.idx < 0 || shard.idx >= total) {
      problem(`shards[${i}].idx`, `${shard.idx} is out of range: with ${total} shards, idx must be 0..${total - 1}`);
    }
    for (const key of ['address', 'replica'] as const) {
      const canonical = canonicalAddress(shard[key]);
      const first = addresses.get(canonical);
      if (first !== undefined) problem(`shards[${i}].${key}`, `duplicate of ${first} ("${shard[key]}")`);
      else addresses.set(canonical, `shards[${i}].${key}`);
    }
  });
  // Which idx is missing is only clear when every shard is valid and in range.
  const missing = Array.from({ length: total }, (_, i) => i).filter((i) => !idxs.has(i));
  if (missing.length > 0 && shards.length === total && shards.every((s) => s.idx >= 0 && s.idx < total)) {
    problem('shards', `idx must be exactly 0..${total - 1}; missing ${missing.join(', ')}`);
  }
}

/** An address in one spelling (localhost as 127.0.0.1, host in lower case), for comparing addresses. */
export function canonicalAddress(address: string): string {
  const parsed = parseAddress(address);
  if (!parsed) return address;
  const host = parsed.host === 'localhost' ? '127.0.0.1' : parsed.host.toLowerCase();
  return `${host}:${parsed.port}`;
}

function describe(value: unknown): string {
  if (Array.isArray(value)) return 'an array';
  if (value instanceof Date) return 'a date';
  if (isRecord(value)) return 'a table';
  return `${typeof value === 'bigint' ? 'integer' : typeof value} ${JSON.stringify(String(value))}`;
}

function layoutIdOf(shards: readonly ShardConfig[]): string {
  const canonical = shards.map((s) => `${s.idx}:${s.name}:${s.address}:${s.replica}`).join('\n');
  return createHash('sha256').update(canonical).digest('hex').slice(0, 12);
}

/** Parses and validates TOML text. Syntax errors name the line and column. */
export function parseConfig(text: string, file: string): Config {
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (err) {
    if (err instanceof TomlError) {
      const reason = err.message.split('\n')[0]!.replace(/^Invalid TOML document: /, '');
      throw new ConfigError([`${file}:${err.line}:${err.column}: TOML syntax error: ${reason}`]);
    }
    throw err;
  }
  return validateConfig(doc, file);
}

/** Reads and validates a config file. */
export function loadConfig(file: string): Config {
  let text: string;
  try {
    const size = statSync(file).size;
    if (size > configBytesMax) throw new ConfigError([`${file}: ${size} bytes; a config may be at most ${configBytesMax} bytes`]);
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError([`${file}: cannot read: ${(err as Error).message}`]);
  }
  return parseConfig(text, file);
}

/**
 * The config's file name without its directory, for messages that go into HTTP replies: a client learns
 * which file to look at, not where the server keeps it.
 */
export function configName(config: Config): string {
  return basename(config.file);
}

/** The shard named `name`, or a ConfigError listing the names that exist. */
export function findShard(config: Config, name: string): ShardConfig {
  const shard = config.shards.find((s) => s.name === name);
  if (!shard) {
    throw new ConfigError([`${config.file}: no shard named "${name}" (shards: ${config.shards.map((s) => s.name).join(', ')})`]);
  }
  return shard;
}
