// The node's logger: JSON lines through pino, into a file of its own that rolls by size (pino-roll), and
// to stderr as JSON or, for a person at a terminal, through pino-pretty. Every line carries the node's
// shard and member, and its role and epoch as they are when the line is written (a failover changes
// them). The file is written asynchronously (pino-roll rolls only after a write has drained) and
// flushed synchronously when the process exits; stderr is written synchronously.

import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import pino, { type DestinationStream, type StreamEntry } from 'pino';
import pinoPretty from 'pino-pretty';
import roll from 'pino-roll';
import { logFileBytesMax, logFilesKept } from '../core/limits.js';
import type { Log, LogFields, LogLevel } from '../core/log.js';

export type LogFormat = 'json' | 'pretty';
/** Where lines go: the node's log file, stderr, or both. */
export type LogTarget = 'file' | 'stderr' | 'both';

export interface LoggerOptions {
  readonly level: LogLevel;
  /** How stderr lines look; the file is always JSON. */
  readonly format: LogFormat;
  readonly to: LogTarget;
  /** The log file's path without its number: `<dir>/<shard>-<member>` becomes `<shard>-<member>.1.log`, `.2.log`... */
  readonly file: string;
  /** Fields on every line. */
  readonly bindings: LogFields;
  /** The bounds of the file, for tests (default logFileBytesMax and logFilesKept). */
  readonly fileBytesMax?: number;
  readonly filesKept?: number;
}

/** What changes on a running node and goes on every line: its role and its shard's epoch. */
export interface LogContext {
  role: string | undefined;
  epoch: number | undefined;
}

export interface NodeLogger {
  readonly log: Log;
  readonly context: LogContext;
  /** Writes what is buffered and closes the log file. */
  close(): Promise<void>;
}

/**
 * Field names whose values never reach a log: the cluster token and stored values, should a caller ever
 * pass them as fields (messages name keys and addresses, never values).
 */
const redacted = ['token', 'value', 'values', 'authorization', '*.token', '*.value', 'headers["x-kv-token"]'];

export async function createLogger(options: LoggerOptions): Promise<NodeLogger> {
  const streams: StreamEntry<LogLevel>[] = [];
  let file: (DestinationStream & NodeJS.EventEmitter & { end(): void; flushSync(): void }) | undefined;
  if (options.to !== 'stderr') {
    mkdirSync(dirname(options.file), { recursive: true, mode: 0o700 });
    // At most logFilesKept files of logFileBytesMax each: a node left running for weeks keeps a bounded tail.
    file = (await roll({
      file: options.file,
      size: `${Math.floor((options.fileBytesMax ?? logFileBytesMax) / 1024)}k`,
      // pino-roll removes old files while the next one is being created, so it keeps one more than its count.
      limit: { count: (options.filesKept ?? logFilesKept) - 1, removeOtherLogFiles: true },
      mkdir: true,
      sync: false,
      mode: 0o600,
    })) as typeof file;
    // A line logged just before process.exit() or a crash still reaches the file.
    const written = file!;
    process.once('exit', () => written.flushSync());
    streams.push({ level: options.level, stream: written });
  }
  if (options.to !== 'file') {
    const stderr: DestinationStream =
      options.format === 'pretty'
        ? pinoPretty({ destination: 2, sync: true, colorize: process.stderr.isTTY, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' })
        : pino.destination({ dest: 2, sync: true });
    streams.push({ level: options.level, stream: stderr });
  }
  const context: LogContext = { role: undefined, epoch: undefined };
  const logger = pino(
    {
      level: options.level,
      base: { pid: process.pid, ...options.bindings },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: redacted, censor: '[redacted]' },
      mixin: () => ({ role: context.role, epoch: context.epoch }),
    },
    pino.multistream(streams),
  );
  const at =
    (level: LogLevel) =>
    (msg: string, fields?: LogFields): void => {
      if (fields === undefined) logger[level](msg);
      else logger[level](fields, msg);
    };
  const close = () =>
    new Promise<void>((resolve) => {
      if (file === undefined) return resolve();
      file.once('close', () => resolve());
      file.end();
    });
  return { log: { error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug') }, context, close };
}
