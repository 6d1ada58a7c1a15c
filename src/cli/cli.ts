#!/usr/bin/env node
// The one entry point: reads argv and the environment, wires a node, handles signals.

import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { failoverShard } from './failover-command.js';
import { ConfigError, findShard, loadConfig, shardNamePattern, type Config } from '../core/config.js';
import { logLevels, textLog, type Log, type LogLevel } from '../core/log.js';
import type { KvNode as KvNodeClass } from '../node/node.js';
import type { LogContext, LogFormat, LogTarget } from '../node/logger.js';

// The node (LMDB, express, undici) and the admin commands load only for the commands that use them: a
// failover's clock starts with the command, and loading all of it took about half a second here.
const loadNode = async (): Promise<typeof KvNodeClass> => (await import('../node/node.js')).KvNode;

const usage = `kvshard: a sharded primary/replica key-value store

Usage:
  kvshard serve --config FILE --shard NAME [--replica] [--data-dir DIR] [--overwrite-replica]
      Run member a of shard NAME, at its address (with --replica, member b, at its replica address),
      in DIR/NAME-a (or NAME-b). Each serves the role the cluster's epochs give it: at first, a is
      the primary and b the read-only replica; a failover swaps them.
      A primary whose data dir is new first asks its replica for the shard's data and copies it;
      until the replica answers, its shard's writes get 503. --overwrite-replica starts it at once
      with the data dir's own data (a deliberate fresh start or restore) and makes the replica
      take that data, replacing what the replica holds.
  kvshard drain --config FILE --shard NAME [--data-dir DIR]
      Run shard NAME, which is no longer in FILE, until every key it holds has moved to the shard that
      owns it now; then move its data dirs to DIR/retired/ and exit 0 (launch.sh does this by itself).
  kvshard check-config --config FILE
      Validate FILE and print its shards; exit 2 when it is invalid.
  kvshard status --config FILE
      Show every node's state, key count, sequence and replication lag.
  kvshard failover --config FILE --shard NAME [--force]
      Make the member of shard NAME that is its replica now its primary, at the next epoch; the old
      primary becomes its replica. Without --force (a switchover, both members up) the primary's writes
      wait until the replica has applied every one of them (no acknowledged write is lost), for at most
      2 s. --force promotes the replica with the data it has, for a primary that is down: writes
      acknowledged with ack=primary that had not reached it go to the old primary's rollback file when
      it rejoins. Exit status: 0 done, 2 usage, 3 unreachable, 4 unauthorized, 5 refused (nothing changed).
  kvshard verify --config FILE
      Compare each replica's data with its primary's (slot-range digests); exit 1 on a difference,
      naming the first differing slot.
  kvshard --help

Environment:
  KV_CLUSTER_TOKEN  the cluster secret for internal endpoints; overrides token in the config.
                    With neither, DIR/cluster.token (where launch.sh keeps it) is used.

Options:
  --config FILE    sharding config (default: $KV_CONFIG or ./sharding.toml)
  --shard NAME     the shard this process belongs to
  --replica        run member b (at the shard's replica address) instead of member a
  --data-dir DIR   where LMDB environments live (default: $KV_DATA_DIR or ./data);
                   this process uses DIR/<shard>-a/ (or -b)
  --log-level L    error, warn, info (default) or debug (default: $KV_LOG_LEVEL or info)
  --log-format F   how stderr lines look: json (default) or pretty, for a person at a terminal
  --log-to T       file, stderr or both (default): the file is DIR/logs/<shard>-<a|b|drain>.N.log,
                   JSON lines, rolled at 10 MiB with the 5 newest files kept

Exit status: 0 on a clean stop; 2 for an invalid config or usage, a data dir in use by another
process, or an address already in use; 1 for other failures.
`;

/** What the process logs before its node's logger exists (and what a drain's finish prints). */
let log: Log = textLog((line) => process.stderr.write(line));

function fail(message: string, status: number): never {
  process.stderr.write(`${message}\n`);
  process.exit(status);
}

/**
 * The cluster secret: KV_CLUSTER_TOKEN overrides the config's token; with neither, the token file
 * launch.sh keeps in the data dir.
 */
function clusterToken(config: Config, dataDir: string): string {
  const token = process.env['KV_CLUSTER_TOKEN'] || config.token || tokenFile(dataDir);
  if (!token) {
    throw new ConfigError([
      `${config.file}: token: missing: set token in the file, KV_CLUSTER_TOKEN in the environment, or keep one in ` +
        `${join(dataDir, 'cluster.token')} (launch.sh generates it there)`,
    ]);
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

/** The command line, parsed strictly: an unknown option or a missing value exits with the usage and status 2. */
function parseCommandLine(argv: string[]) {
  try {
    return parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        config: { type: 'string' },
        shard: { type: 'string' },
        replica: { type: 'boolean', default: false },
        'overwrite-replica': { type: 'boolean', default: false },
        'data-dir': { type: 'string' },
        force: { type: 'boolean', default: false },
        'log-level': { type: 'string' },
        'log-format': { type: 'string', default: 'json' },
        'log-to': { type: 'string', default: 'both' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (err) {
    fail(`${(err as Error).message}\n\n${usage}`, 2);
  }
}

type Options = ReturnType<typeof parseCommandLine>['values'];

async function main(argv: string[]): Promise<void> {
  const { values, positionals } = parseCommandLine(argv);
  const command = positionals[0];
  if (values.help || command === 'help') {
    process.stdout.write(usage);
    return;
  }
  const configFile = values.config ?? process.env['KV_CONFIG'] ?? 'sharding.toml';
  const dataDir = values['data-dir'] ?? process.env['KV_DATA_DIR'] ?? 'data';
  try {
    if (command === 'check-config') {
      const config = loadConfig(configFile);
      for (const s of config.shards) process.stdout.write(`${s.name} ${s.idx} ${s.address} ${s.replica}\n`);
      return;
    }
    if (command === 'status') {
      const { statusTable } = await import('./admin.js');
      process.stdout.write(`${await statusTable(loadConfig(configFile))}\n`);
      return;
    }
    if (command === 'verify') {
      const config = loadConfig(configFile);
      const { verifyCluster } = await import('./admin.js');
      const equal = await verifyCluster(config, clusterToken(config, dataDir), (line) => process.stdout.write(`${line}\n`));
      process.exitCode = equal ? 0 : 1;
      return;
    }
    if (command === 'failover') {
      if (!values.shard) fail(`failover needs --shard NAME\n\n${usage}`, 2);
      const config = loadConfig(configFile);
      process.exitCode = await failoverShard(
        config,
        clusterToken(config, dataDir),
        values.shard,
        values.force,
        (line) => process.stdout.write(`${line}\n`),
        (line) => process.stderr.write(`${line}\n`),
      );
      return;
    }
    if (values.force) fail(`--force is for failover\n\n${usage}`, 2);
    await serveOrDrain(command, values, configFile, dataDir);
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message, 2);
    const { StartupError } = await import('../storage/data-dir-lock.js');
    if (err instanceof StartupError) fail(`kvshard: ${err.message}`, 2);
    fail(`kvshard: ${(err as Error).stack ?? String(err)}`, 1);
  }
}

/** `serve` and `drain`: starts a node and stops it on SIGTERM or SIGINT. A bad argument exits with status 2. */
async function serveOrDrain(command: string | undefined, values: Options, configFile: string, dataDir: string): Promise<void> {
  if (command !== 'serve' && command !== 'drain') fail(`unknown command ${command ?? '(none)'}\n\n${usage}`, 2);
  if (!values.shard) fail(`${command} needs --shard NAME\n\n${usage}`, 2);
  const config = loadConfig(configFile);
  // Stored values, logs and locks are for this user only (data dirs 700, files 600).
  process.umask(0o077);
  if (values['overwrite-replica'] && (command !== 'serve' || values.replica)) fail(`--overwrite-replica is for the primary's serve\n\n${usage}`, 2);
  if (command === 'drain') {
    await drain(config, values, dataDir);
    return;
  }
  const shard = findShard(config, values.shard);
  const token = clusterToken(config, dataDir);
  // A start refused (an address in use, say) leaves no data dir it created, its logs/ included.
  const dataDirExisted = existsSync(dataDir);
  const logContext = await startLogging(values, dataDir, shard.name, values.replica ? 'b' : 'a');
  const role = values.replica ? 'replica' : 'primary';
  const KvNode = await loadNode();
  const node = await KvNode.start({ config, shard, role, dataDir, token, log, logContext, overwriteReplica: values['overwrite-replica'] }).catch(
    (err: unknown) => {
      if (!dataDirExisted) rmSync(dataDir, { recursive: true, force: true });
      throw err;
    },
  );
  const stop = (signal: string) => {
    log.info(`${signal}: shutting down`);
    node.close().then(
      () => process.exit(0),
      (err) => fail(`shutdown failed: ${(err as Error).stack}`, 1),
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

/** Runs a removed shard until its keys have moved, then retires its data dirs. */
async function drain(config: Config, values: Options, dataDir: string): Promise<void> {
  const name = values.shard!;
  if (config.shards.some((s) => s.name === name)) throw new ConfigError([`${config.file}: ${name} is in the config: serve it instead of draining it`]);
  const token = clusterToken(config, dataDir);
  const logContext = await startLogging(values, dataDir, name, 'drain');
  const KvNode = await loadNode();
  const { drainedShard, retire } = await import('../node/drain.js');
  const { shard, lock } = await drainedShard(dataDir, name, log);
  const node = await KvNode.start({ config, shard, role: 'drain', dataDir, token, log, lock, logContext });
  let stopping = false;
  const stop = (signal: string) => {
    stopping = true;
    log.info(`${signal}: stopping the drain of ${name}; it resumes when started again`);
    node.close().then(
      () => process.exit(0),
      (err) => fail(`shutdown failed: ${(err as Error).stack}`, 1),
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  if (!(await node.migrationFinished()) || stopping) return;
  await node.close();
  const retired = retire(dataDir, name);
  log.info(`${name} drained: every key now lives on the shards of ${config.file}; its data dirs moved to ${retired}`);
  process.exit(0);
}

/**
 * Replaces the start-up logger with the node's: JSON lines to DIR/logs/<shard>-<member>.N.log and to
 * stderr, as --log-to says. Bad values exit with the usage and status 2.
 */
async function startLogging(values: Options, dataDir: string, shard: string, member: string): Promise<LogContext> {
  // The name becomes part of a file name: only what a config allows for a shard name.
  if (!shardNamePattern.test(shard)) fail(`--shard: not a shard name: ${JSON.stringify(shard.slice(0, 64))}`, 2);
  const level = values['log-level'] ?? process.env['KV_LOG_LEVEL'] ?? 'info';
  if (!(logLevels as readonly string[]).includes(level)) fail(`--log-level must be one of ${logLevels.join(', ')}\n\n${usage}`, 2);
  const format = values['log-format'];
  if (format !== 'json' && format !== 'pretty') fail(`--log-format must be json or pretty\n\n${usage}`, 2);
  const to = values['log-to'];
  if (to !== 'file' && to !== 'stderr' && to !== 'both') fail(`--log-to must be file, stderr or both\n\n${usage}`, 2);
  const { createLogger } = await import('../node/logger.js');
  const logger = await createLogger({
    level: level as LogLevel,
    format: format as LogFormat,
    to: to as LogTarget,
    file: join(dataDir, 'logs', `${shard}-${member}`),
    bindings: { shard, member },
  });
  log = logger.log;
  return logger.context;
}

// A reader that goes away (`kvshard status | head`) is not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

void main(process.argv.slice(2));
