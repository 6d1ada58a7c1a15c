// The logger every part of a node writes to. Parts take this interface, not pino itself, so that the
// layers below node/ stay free of the logging library and a test can pass a plain one. node/logger.ts
// makes the real one: JSON lines through pino, with the node's shard, role and epoch on every line.
//
// Levels mean something: `error` needs a person (a bug, a divergence, a refused resync), `warn` is
// degraded service (a peer down, refusals, retries), `info` is lifecycle (start, stop, role change,
// migration start and end), `debug` is the rest. Nothing is logged per request at `info`.

/** Fields beside the message: plain values, never a stored value or the cluster token. */
export type LogFields = Record<string, unknown>;

export interface Log {
  error(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  debug(msg: string, fields?: LogFields): void;
}

export const logLevels = ['error', 'warn', 'info', 'debug'] as const;
export type LogLevel = (typeof logLevels)[number];

/** A Log that writes `<time> <LEVEL> <msg> <fields as JSON>` lines to `write`, for tools and tests. */
export function textLog(write: (line: string) => void, level: LogLevel = 'info'): Log {
  const most = logLevels.indexOf(level);
  const at =
    (name: LogLevel) =>
    (msg: string, fields?: LogFields): void => {
      if (logLevels.indexOf(name) > most) return;
      write(`${new Date().toISOString()} ${name.toUpperCase()} ${msg}${fields ? ` ${JSON.stringify(fields)}` : ''}\n`);
    };
  return { error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug') };
}

/** A Log that drops everything. */
export const silentLog: Log = { error() {}, warn() {}, info() {}, debug() {} };
