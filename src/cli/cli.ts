#!/usr/bin/env node
// The one entry point: reads argv and the environment, runs one command, handles signals. Each command
// is parsed with its own options (commands.ts); every failure ends as one line on stderr and an exit
// status of exit-status.ts.

import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { commandUsage, isCommand, parseCommand, shortUsage, usage, type CommandName, type OptionValues, type ParsedCommand } from './commands.js';
import { CommandError, exitStatus, usageError } from './exit-status.js';
import { ConfigError, findShard, loadConfig, shardNamePattern, type Config, type ShardConfig } from '../core/config.js';
import { logLevels, textLog, type Log, type LogLevel } from '../core/log.js';
import { nodeTimeoutMsDefault } from '../core/limits.js';
import type { ReadFrom } from '../client/index.js';
import type { KvNode as KvNodeClass } from '../node/node.js';
import type { LogContext, LogFormat, LogTarget } from '../node/logger.js';
import type { DataCallOptions, Output } from './data-commands.js';

// The node (LMDB, express, undici), the client and the admin commands load only for the commands that
// use them: a failover's clock starts with the command, and loading all of it took about half a second.
const loadNode = async (): Promise<typeof KvNodeClass> => (await import('../node/node.js')).KvNode;
const loadDataCommands = () => import('./data-commands.js');

/** A call's deadline when --timeout is not given, retries included (the client's default). */
const callTimeoutMsDefault = 5_000;
/** The longest --timeout: a command that waits longer than this is better run again. */
const callTimeoutMsMax = 600_000;

/** What the process logs before its node's logger exists (and what a drain's finish prints). */
let log: Log = textLog((line) => process.stderr.write(line));

const stdout = (chunk: string | Uint8Array) => process.stdout.write(chunk);

function stringOption(values: OptionValues, name: string): string | undefined {
  const value = values[name];
  return typeof value === 'string' ? value : undefined;
}

/** A string option that must be one of `choices`; `fallback` when it is not given. */
function choice<T extends string>(values: OptionValues, name: string, choices: readonly T[], fallback: T): T {
  const value = stringOption(values, name) ?? fallback;
  if (!(choices as readonly string[]).includes(value))
    throw usageError(`--${name} must be ${choices.join(', ').replace(/, ([^,]*)$/, ' or $1')}, got ${JSON.stringify(value)}`);
  return value as T;
}

const configFile = (values: OptionValues) => stringOption(values, 'config') || process.env['KV_CONFIG'] || 'sharding.toml';
const dataDirOf = (values: OptionValues) => stringOption(values, 'data-dir') || process.env['KV_DATA_DIR'] || 'data';
const outputOf = (values: OptionValues): Output => ({ format: choice(values, 'output', ['table', 'json'] as const, 'table'), stdout });

/** --endpoints as a list, or undefined when not given. */
function endpointsOption(values: OptionValues): string[] | undefined {
  const text = stringOption(values, 'endpoints');
  if (text === undefined) return undefined;
  const endpoints = text
    .split(',')
    .map((e) => e.trim())
    .filter((e) => e !== '');
  if (endpoints.length === 0) throw usageError('--endpoints needs at least one host:port');
  return endpoints;
}

/**
 * The config, when the command needs one: always without --endpoints; with it, only when --config or
 * KV_CONFIG names one (for its token).
 */
function configFor(values: OptionValues): Config | undefined {
  if (endpointsOption(values) === undefined || stringOption(values, 'config') || process.env['KV_CONFIG']) return loadConfig(configFile(values));
  return undefined;
}

/**
 * The cluster secret: KV_CLUSTER_TOKEN overrides the config's token; with neither, the token file
 * launch.sh keeps in the data dir.
 */
function clusterToken(config: Config | undefined, dataDir: string): string {
  const token = process.env['KV_CLUSTER_TOKEN'] || config?.token || tokenFile(dataDir);
  if (!token) {
    const file = config === undefined ? 'token: missing: pass --config FILE with a token' : `${config.file}: token: missing: set token in the file`;
    throw new ConfigError([`${file}, KV_CLUSTER_TOKEN in the environment, or keep one in ${join(dataDir, 'cluster.token')} (launch.sh generates it there)`]);
  }
  return token;
}

function tokenFile(dataDir: string): string | undefined {
  try {
    return readFileSync(join(dataDir, 'cluster.token'), 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

/** Where get, set and del send their call: --endpoints, or every member of the config. */
function callOptions(values: OptionValues): DataCallOptions {
  const timeout = stringOption(values, 'timeout');
  if (timeout !== undefined && !(/^\d{1,6}$/.test(timeout) && Number(timeout) >= 1 && Number(timeout) <= callTimeoutMsMax)) {
    throw usageError(`--timeout must be a whole number of milliseconds from 1 to ${callTimeoutMsMax}, got ${JSON.stringify(timeout)}`);
  }
  const readFrom = choice<ReadFrom>(values, 'read-from', ['primary', 'replica', 'any'], 'primary');
  const endpoints = endpointsOption(values) ?? loadConfig(configFile(values)).shards.flatMap((s) => [s.address, s.replica]);
  return { endpoints, timeoutMs: timeout === undefined ? callTimeoutMsDefault : Number(timeout), readFrom };
}

/** The shards status, verify and failover look at: from the cluster map an endpoint answers, or from the config. */
async function shardsFor(values: OptionValues, config: Config | undefined): Promise<{ shards: readonly ShardConfig[]; where: string }> {
  const endpoints = endpointsOption(values);
  if (endpoints === undefined) return { shards: config!.shards, where: config!.file };
  const { mapShards } = await loadDataCommands();
  return { shards: await mapShards({ endpoints, timeoutMs: callTimeoutMsDefault, readFrom: 'primary' }), where: `the cluster map of ${endpoints.join(',')}` };
}

async function get({ values, positionals }: ParsedCommand): Promise<number> {
  const out = outputOf(values);
  const options = callOptions(values);
  return (await loadDataCommands()).getCommand(options, positionals[0]!, out);
}

async function set({ values, positionals }: ParsedCommand): Promise<number> {
  const [key, text] = positionals as [string, string | undefined];
  const file = stringOption(values, 'file');
  if ((text === undefined) === (file === undefined)) throw usageError(`set needs exactly one of VALUE, - (read stdin) and --file PATH`);
  const ack = choice(values, 'ack', ['primary', 'replica'] as const, 'primary');
  const out = outputOf(values);
  const options = callOptions(values);
  const data = await loadDataCommands();
  let value: Buffer;
  if (file !== undefined) value = await data.readValueFile(file);
  else if (text === '-') {
    if (process.stdin.isTTY) process.stderr.write('kvshard: reading the value from the terminal; end it with Ctrl-D\n');
    value = await data.readValueStdin(process.stdin);
  } else value = Buffer.from(text!, 'utf8');
  return data.setCommand(options, key, value, ack, out);
}

async function del({ values, positionals }: ParsedCommand): Promise<number> {
  const ack = choice(values, 'ack', ['primary', 'replica'] as const, 'primary');
  const out = outputOf(values);
  const options = callOptions(values);
  return (await loadDataCommands()).delCommand(options, positionals[0]!, ack, out);
}

async function status({ values }: ParsedCommand): Promise<number> {
  const out = outputOf(values);
  // status needs no token: with --endpoints, no config either.
  const config = endpointsOption(values) === undefined ? loadConfig(configFile(values)) : undefined;
  const { shards } = await shardsFor(values, config);
  const { clusterStatus, statusTable } = await import('./cluster-status.js');
  const members = await clusterStatus(shards);
  out.stdout(out.format === 'table' ? `${statusTable(members)}\n` : `${JSON.stringify(members)}\n`);
  if (members.every((m) => m.state === 'down')) throw new CommandError('unavailable', 'no member answers /status', exitStatus.unavailable);
  return exitStatus.ok;
}

/**
 * The shards verify and failover send the cluster token to. The map an endpoint answers is not
 * authenticated, so with --endpoints every member it names must be listed there or in the config.
 */
async function tokenShards(values: OptionValues, config: Config | undefined): Promise<{ shards: readonly ShardConfig[]; where: string }> {
  const found = await shardsFor(values, config);
  const listed = new Set([...(endpointsOption(values) ?? []), ...(config?.shards.flatMap((s) => [s.address, s.replica]) ?? [])]);
  const unlisted = found.shards.flatMap((s) => [s.address, s.replica]).filter((a) => !listed.has(a));
  if (unlisted.length > 0) {
    throw usageError(
      `${found.where} names members that neither --endpoints nor the config lists (${unlisted.join(', ')}): ` +
        'the cluster token goes only to listed nodes; add them to --endpoints or pass --config',
    );
  }
  return found;
}

async function verify({ values }: ParsedCommand): Promise<number> {
  const out = outputOf(values);
  const config = configFor(values);
  const token = clusterToken(config, dataDirOf(values));
  const { shards } = await tokenShards(values, config);
  const { verdictJson, verdictLine, verdictsExit, verifyShards } = await import('./admin.js');
  const verdicts = await verifyShards(shards, token);
  const exit = verdictsExit(verdicts);
  if (out.format === 'table') out.stdout(verdicts.map((v) => `${verdictLine(v)}\n`).join(''));
  else out.stdout(`${JSON.stringify({ equal: exit === exitStatus.ok, shards: verdicts.map(verdictJson) })}\n`);
  const failed = verdicts.find((v) => v.error?.exit === exit);
  if (failed) throw failed.error!;
  return exit;
}

async function failover({ values }: ParsedCommand): Promise<number> {
  const name = stringOption(values, 'shard');
  if (name === undefined) throw usageError('failover needs --shard NAME');
  const out = outputOf(values);
  const config = configFor(values);
  const token = clusterToken(config, dataDirOf(values));
  const { shards, where } = await tokenShards(values, config);
  const { failoverLine, failoverShard } = await import('./failover-command.js');
  const withoutMajority = values['without-majority'] === true;
  if (withoutMajority && values['force'] !== true) throw usageError('--without-majority goes with --force');
  const report = await failoverShard(shards, where, token, name, {
    force: values['force'] === true,
    withoutMajority,
    nodeTimeoutMs: config?.nodeTimeoutMs ?? nodeTimeoutMsDefault,
  });
  out.stdout(out.format === 'table' ? `${failoverLine(name, report)}\n` : `${JSON.stringify(report)}\n`);
  if (report['old_primary_told'] === false && report['kind'] === 'switchover') {
    process.stderr.write(
      `kvshard: incomplete: ${name}: the old primary ${String(report['previous_primary'])} did not hear of epoch ${String(report['epoch'])}; ` +
        `nodes not told: ${(report['nodes_not_told'] as string[] | undefined)?.join(', ') ?? '?'} (it takes no writes until it learns)\n`,
    );
    return exitStatus.incomplete;
  }
  return exitStatus.ok;
}

async function checkConfig({ values }: ParsedCommand): Promise<number> {
  const out = outputOf(values);
  const config = loadConfig(configFile(values));
  if (out.format === 'table') {
    out.stdout(config.shards.map((s) => `${s.name} ${s.idx} ${s.address} ${s.replica}\n`).join(''));
    return exitStatus.ok;
  }
  const { file, layoutId, shards, token, logRetentionBytes, migration, metrics, coordinator } = config;
  const json = {
    file,
    layout_id: layoutId,
    shards,
    token_set: token !== undefined,
    replication: { log_retention_bytes: logRetentionBytes },
    migration: { batch_keys: migration.batchKeys, batch_pause_ms: migration.batchPauseMs },
    metrics: { enabled: metrics.enabled, token_set: metrics.token !== undefined },
    coordinator:
      coordinator === undefined
        ? null
        : { etcd: coordinator.etcd, lease_ttl_ms: coordinator.leaseTtlMs, max_lag_on_failover: coordinator.maxLagOnFailover, prefix: coordinator.prefix },
  };
  out.stdout(`${JSON.stringify(json)}\n`);
  return exitStatus.ok;
}

/** `serve`: starts a node and stops it on SIGTERM or SIGINT. */
async function serve({ values }: ParsedCommand): Promise<number> {
  const name = stringOption(values, 'shard');
  if (name === undefined) throw usageError('serve needs --shard NAME');
  const replica = values['replica'] === true;
  if (values['overwrite-replica'] === true && replica) throw usageError("--overwrite-replica is for the primary's serve (member a)");
  const config = loadConfig(configFile(values));
  const dataDir = dataDirOf(values);
  // Stored values, logs and locks are for this user only (data dirs 700, files 600).
  process.umask(0o077);
  const shard = findShard(config, name);
  const token = clusterToken(config, dataDir);
  // A start refused (an address in use, say) leaves no data dir it created, its logs/ included.
  const dataDirExisted = existsSync(dataDir);
  const logContext = await startLogging(values, dataDir, shard.name, replica ? 'b' : 'a');
  const KvNode = await loadNode();
  const overwriteReplica = values['overwrite-replica'] === true;
  const node = await KvNode.start({ config, shard, role: replica ? 'replica' : 'primary', dataDir, token, log, logContext, overwriteReplica }).catch(
    (err: unknown) => {
      if (!dataDirExisted) rmSync(dataDir, { recursive: true, force: true });
      throw err;
    },
  );
  stopOnSignals(node, (signal) => log.info(`${signal}: shutting down`));
  return exitStatus.ok;
}

/** `drain`: runs a removed shard until its keys have moved, then retires its data dirs. */
async function drain({ values }: ParsedCommand): Promise<number> {
  const name = stringOption(values, 'shard');
  if (name === undefined) throw usageError('drain needs --shard NAME');
  const config = loadConfig(configFile(values));
  const dataDir = dataDirOf(values);
  process.umask(0o077);
  if (config.shards.some((s) => s.name === name)) throw new ConfigError([`${config.file}: ${name} is in the config: serve it instead of draining it`]);
  const token = clusterToken(config, dataDir);
  const logContext = await startLogging(values, dataDir, name, 'drain');
  const KvNode = await loadNode();
  const { drainedShard, retire } = await import('../node/drain.js');
  const { shard, lock } = await drainedShard(dataDir, name, log);
  const node = await KvNode.start({ config, shard, role: 'drain', dataDir, token, log, lock, logContext });
  let stopping = false;
  stopOnSignals(node, (signal) => {
    stopping = true;
    log.info(`${signal}: stopping the drain of ${name}; it resumes when started again`);
  });
  if (!(await node.migrationFinished()) || stopping) return exitStatus.ok;
  await node.close();
  const retired = retire(dataDir, name);
  log.info(`${name} drained: every key now lives on the shards of ${config.file}; its data dirs moved to ${retired}`);
  process.exit(exitStatus.ok);
}

/** On SIGTERM or SIGINT: closes the node and exits 0, or 70 when closing fails. */
function stopOnSignals(node: { close(): Promise<void> }, stopping: (signal: string) => void): void {
  const stop = (signal: string) => {
    stopping(signal);
    node.close().then(
      () => process.exit(exitStatus.ok),
      (err) => exitWith(new CommandError('internal', `shutdown failed: ${(err as Error).stack}`, exitStatus.internal), undefined),
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

/**
 * Replaces the start-up logger with the node's: JSON lines to DIR/logs/<shard>-<member>.N.log and to
 * stderr, as --log-to says. Bad values are usage errors.
 */
async function startLogging(values: OptionValues, dataDir: string, shard: string, member: string): Promise<LogContext> {
  // The name becomes part of a file name: only what a config allows for a shard name.
  if (!shardNamePattern.test(shard)) throw usageError(`--shard: not a shard name: ${JSON.stringify(shard.slice(0, 64))}`);
  const level = choice<LogLevel>(values, 'log-level', logLevels, (process.env['KV_LOG_LEVEL'] || 'info') as LogLevel);
  const format = choice<LogFormat>(values, 'log-format', ['json', 'pretty'], 'json');
  const to = choice<LogTarget>(values, 'log-to', ['file', 'stderr', 'both'], 'both');
  const { createLogger } = await import('../node/logger.js');
  const logger = await createLogger({ level, format, to, file: join(dataDir, 'logs', `${shard}-${member}`), bindings: { shard, member } });
  log = logger.log;
  return logger.context;
}

const handlers: Readonly<Record<CommandName, (parsed: ParsedCommand) => Promise<number>>> = {
  get,
  set,
  del,
  status,
  verify,
  failover,
  'check-config': checkConfig,
  serve,
  drain,
};

/** Prints a failure as one line (with the command's usage line after a usage error) and exits with its status. */
async function exitWith(err: unknown, command: CommandName | undefined): Promise<never> {
  let lines: string[];
  let exit: number;
  if (err instanceof CommandError) {
    lines = [`kvshard: ${err.code}: ${err.message}`, ...(err.code === 'usage' ? [shortUsage(command)] : [])];
    exit = err.exit;
  } else if (err instanceof ConfigError) {
    lines = err.problems.map((problem) => `kvshard: invalid_config: ${problem}`);
    exit = exitStatus.usage;
  } else {
    const { StartupError } = await import('../storage/data-dir-lock.js');
    const refused = err instanceof StartupError;
    lines = [`kvshard: ${refused ? 'cannot_start' : 'internal'}: ${refused ? err.message : ((err as Error)?.stack ?? String(err))}`];
    exit = refused ? exitStatus.usage : exitStatus.internal;
  }
  process.stderr.write(`${lines.join('\n')}\n`);
  process.exit(exit);
}

async function main(argv: string[]): Promise<void> {
  const [first, ...rest] = argv;
  let command: CommandName | undefined;
  try {
    if (first === '--help' || first === '-h' || (first === 'help' && rest.length === 0)) {
      stdout(usage());
      return;
    }
    const name = first === 'help' ? rest[0] : first;
    if (!isCommand(name)) {
      throw usageError(
        name === undefined ? 'no command given' : name.startsWith('-') ? `the command comes first, before ${name}` : `unknown command ${JSON.stringify(name)}`,
      );
    }
    command = name;
    if (first === 'help') {
      stdout(commandUsage(name));
      return;
    }
    const parsed = parseCommand(command, rest);
    if (parsed.help) {
      stdout(commandUsage(command));
      return;
    }
    process.exitCode = await handlers[command](parsed);
  } catch (err) {
    await exitWith(err, command);
  }
}

// A reader that goes away (`kvshard status | head`) is not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(exitStatus.ok);
  throw err;
});

void main(process.argv.slice(2));
