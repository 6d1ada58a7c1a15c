// The command line's surface: every command with its arguments, its options and its usage text, and
// every option with the one description all commands share. `kvshard --help` and `kvshard CMD --help`
// are built from these tables, and cli.ts parses each command with exactly the options listed for it.

import { parseArgs } from 'node:util';
import { usageError } from './exit-status.js';

interface OptionSpec {
  readonly type: 'string' | 'boolean';
  readonly short?: string;
  /** The value's placeholder in usage texts (string options). */
  readonly value?: string;
  readonly help: string;
}

const options = {
  config: { type: 'string', value: 'FILE', help: 'the sharding config (default: $KV_CONFIG or ./sharding.toml)' },
  endpoints: {
    type: 'string',
    value: 'LIST',
    help: 'nodes to ask, host:port[,host:port...]; any node of the cluster will do (default: every address in the config)',
  },
  output: { type: 'string', short: 'o', value: 'FORMAT', help: 'table (default: for people) or json (one JSON document, for programs)' },
  'data-dir': {
    type: 'string',
    value: 'DIR',
    help: 'the data dir (default: $KV_DATA_DIR or ./data): members keep their data there; verify and failover read the cluster token from DIR/cluster.token when nothing else sets it',
  },
  'read-from': { type: 'string', value: 'WHERE', help: 'primary (default: reads its own writes), replica (may trail the primary) or any (each in turn)' },
  timeout: { type: 'string', value: 'MS', help: 'give up after MS milliseconds, retries included (default 5000, at most 600000)' },
  file: { type: 'string', value: 'PATH', help: 'store the bytes of file PATH as the value (at most 16 MiB)' },
  ack: { type: 'string', value: 'WHEN', help: 'primary (default): answered once the primary has it on disk; replica: once its replica has applied it too' },
  shard: { type: 'string', value: 'NAME', help: 'the shard, by its name in the config' },
  force: {
    type: 'boolean',
    help: "promote the replica although the primary does not answer (writes that had not reached the replica go to the old primary's rollback file)",
  },
  'without-majority': {
    type: 'boolean',
    help:
      'with --force: promote although no majority of nodes granted it (a one-shard cluster whose primary is dead has no majority left); ' +
      'RISKS TWO PRIMARIES should the old one still be taking writes somewhere, whose writes then end up in a rollback file',
  },
  replica: { type: 'boolean', help: "run member b (at the shard's replica address) instead of member a" },
  'overwrite-replica': { type: 'boolean', help: "start a primary with its data dir's data at once, and make its replica take that data" },
  'log-level': { type: 'string', value: 'LEVEL', help: 'error, warn, info or debug (default: $KV_LOG_LEVEL or info)' },
  'log-format': { type: 'string', value: 'FORMAT', help: 'how stderr lines look: json (default) or pretty, for a person at a terminal' },
  'log-to': {
    type: 'string',
    value: 'WHERE',
    help: 'file, stderr or both (default): the file is DIR/logs/<shard>-<a|b|drain>.N.log, JSON lines, rolled at 10 MiB, the 5 newest kept',
  },
  help: { type: 'boolean', short: 'h', help: "print the command's usage" },
} as const satisfies Record<string, OptionSpec>;

export type OptionName = keyof typeof options;

export type CommandName = 'get' | 'set' | 'del' | 'status' | 'verify' | 'failover' | 'check-config' | 'serve' | 'drain';

interface CommandSpec {
  /** Arguments after the command's name, as usage shows them. */
  readonly args: string;
  readonly summary: string;
  /** What `kvshard CMD --help` says beyond the summary. */
  readonly details: string;
  readonly options: readonly OptionName[];
  /** How many positional arguments the command takes, at least and at most. */
  readonly positionals: readonly [number, number];
  /** The exit statuses this command can end with, beyond 0, in a few words. */
  readonly exits: string;
}

const dataOptions = ['endpoints', 'config', 'timeout', 'output'] as const;

export const commands: Readonly<Record<CommandName, CommandSpec>> = {
  get: {
    args: 'KEY',
    summary: "print KEY's value",
    details:
      "With -o table (the default) the value's bytes go to stdout exactly as stored, with no newline added.\n" +
      'With -o json: {"key","value","encoding"}, the value as text when it is valid UTF-8 (encoding "utf8"),\n' +
      'else base64 (encoding "base64").',
    options: ['read-from', ...dataOptions],
    positionals: [1, 1],
    exits: '1 the key is absent; 2 a bad key (empty, over 1024 bytes); 3 unavailable',
  },
  set: {
    args: 'KEY VALUE | KEY - | KEY --file PATH',
    summary: 'store a value: VALUE as given, the bytes of stdin (-), or of a file',
    details:
      'Answered once the write is durable on the primary (with --ack replica, on its replica too). Prints\n' +
      "shard=, slot=, seq=, ack=, bytes= on one line, or with -o json the node's answer\n" +
      '{"key","shard","slot","seq","ack","bytes"}. A VALUE that starts with - follows --: kvshard set k -- -1.',
    options: ['file', 'ack', ...dataOptions],
    positionals: [1, 2],
    exits: '2 a bad key, a value over 16 MiB; 3 unavailable (after a timeout, the write may or may not have been made)',
  },
  del: {
    args: 'KEY',
    summary: 'delete KEY',
    details: 'Prints shard=, slot=, seq=, ack=, deleted=yes|no on one line, or with -o json the node\'s answer\n{"key","shard","slot","seq","ack","deleted"}.',
    options: ['ack', ...dataOptions],
    positionals: [1, 1],
    exits: '1 the key was absent (deleted=no); 2 a bad key; 3 unavailable',
  },
  status: {
    args: '',
    summary: "every member's role, epoch, keys, sequence, replication lag and migration",
    details:
      'Asks each member of every shard for /status; a member that does not answer shows as down. The members\n' +
      'are named by their place in the config (a at address, b at replica), since a failover swaps roles.\n' +
      'With --endpoints, the shards are those of the cluster map a node answers. -o json: an array with one\n' +
      'object per member.',
    options: ['endpoints', 'config', 'output'],
    positionals: [0, 0],
    exits: '3 no member answers',
  },
  verify: {
    args: '',
    summary: "compare each replica's data with its primary's (slot-range digests)",
    details:
      'Prints one line per shard: equal (with its key count), DIFFERENT (naming the first differing slot) or\n' +
      'cannot compare (why). -o json: {"equal", "shards": [...]}. Uses internal endpoints: needs the cluster\n' +
      "token (KV_CLUSTER_TOKEN, the config's token, or DIR/cluster.token). A shard that cannot be compared\n" +
      'decides the exit status (4, else 3) before a difference does.',
    options: ['endpoints', 'config', 'data-dir', 'output'],
    positionals: [0, 0],
    exits: '1 a replica differs from its primary; 3 a member unreachable; 4 unauthorized',
  },
  failover: {
    args: '--shard NAME [--force [--without-majority]]',
    summary: 'make the member of shard NAME that is its replica now its primary',
    details:
      'The replica becomes primary at the next epoch and the old primary its replica. Without --force (a\n' +
      "switchover, both members up) the primary's writes wait until the replica has applied every one of\n" +
      'them (no acknowledged write is lost), for at most 2 s. The promotion counts only once a majority of\n' +
      'all nodes has stored it. --force promotes the replica with the data it has, for a primary that is\n' +
      'down (refused while the primary answers; nodes grant it once they have not heard from the primary\n' +
      'for node_timeout_ms): writes acknowledged with ack=primary that had not reached it go to the old\n' +
      "primary's rollback file when it rejoins. --without-majority (with --force) promotes without a\n" +
      "majority's grants, at the risk of two primaries. Nothing changes when it is refused. Needs the\n" +
      'cluster token. -o json: the node\'s answer {"shard","primary","epoch","kind","grants",...}.',
    options: ['shard', 'force', 'without-majority', 'endpoints', 'config', 'data-dir', 'output'],
    positionals: [0, 0],
    exits:
      '2 no such shard; 3 unreachable; 4 unauthorized; 5 refused, nothing changed (its primary is down and no --force, it answers and --force, no majority granted it); ' +
      '6 promoted, but the old primary did not hear of it (a switchover whose old primary went silent)',
  },
  'check-config': {
    args: '',
    summary: 'validate the config and list its shards',
    details:
      'Prints "name idx address replica" for each shard, or with -o json the whole validated config\n' +
      '(without its secrets). Every problem of an invalid config is printed, each naming the file and TOML path.',
    options: ['config', 'output'],
    positionals: [0, 0],
    exits: '2 the config is invalid',
  },
  serve: {
    args: '--config FILE --shard NAME [--replica] [--data-dir DIR] [--overwrite-replica]',
    summary: 'run one member of a shard',
    details:
      'Runs member a of shard NAME, at its address (with --replica, member b, at its replica address), in\n' +
      "DIR/NAME-a (or NAME-b). Each serves the role the cluster's epochs give it: at first, a is the primary\n" +
      'and b the read-only replica; a failover swaps them. A primary whose data dir is new first asks its\n' +
      "replica for the shard's data and copies it; until the replica answers, its shard's writes get 503.\n" +
      "--overwrite-replica starts it at once with the data dir's own data (a deliberate fresh start or\n" +
      'restore) and makes the replica take that data, replacing what the replica holds. Stops cleanly on\n' +
      'SIGTERM or SIGINT (exit 0).',
    options: ['shard', 'replica', 'data-dir', 'overwrite-replica', 'config', 'log-level', 'log-format', 'log-to'],
    positionals: [0, 0],
    exits: '2 an invalid config or usage, a data dir in use by another process, an address in use; 70 start-up or shutdown failed',
  },
  drain: {
    args: '--config FILE --shard NAME [--data-dir DIR]',
    summary: 'move every key of a shard removed from the config to its new owner, then exit',
    details:
      'Runs shard NAME, which is no longer in FILE, until every key it holds has moved to the shard that owns\n' +
      'it now; then moves its data dirs to DIR/retired/ and exits 0 (launch.sh does this by itself).',
    options: ['shard', 'data-dir', 'config', 'log-level', 'log-format', 'log-to'],
    positionals: [0, 0],
    exits: '2 an invalid config or usage, the shard is in the config or has no data dir; 70 the drain failed',
  },
};

export function isCommand(name: string | undefined): name is CommandName {
  return name !== undefined && Object.hasOwn(commands, name);
}

/** Option values by name: a string option's text, true for a boolean option given, undefined for one not given. */
export type OptionValues = Readonly<Record<string, string | boolean | undefined>>;

export interface ParsedCommand {
  readonly values: OptionValues;
  readonly positionals: readonly string[];
  /** --help was given: nothing else was checked. */
  readonly help: boolean;
}

/** One command line parsed with the options of its command; unknown options and wrong argument counts are usage errors. */
export function parseCommand(command: CommandName, args: string[]): ParsedCommand {
  const spec = commands[command];
  const config: Record<string, { type: 'string' | 'boolean'; short?: string }> = {};
  for (const name of [...spec.options, 'help'] as const) {
    const option: OptionSpec = options[name];
    config[name] = option.short === undefined ? { type: option.type } : { type: option.type, short: option.short };
  }
  let parsed: { values: Record<string, unknown>; positionals: string[] };
  try {
    parsed = parseArgs({ args, options: config, allowPositionals: true, strict: true });
  } catch (err) {
    throw usageError(`${command}: ${(err as Error).message.replace(/\. To specify a positional argument.*$/s, '')}`);
  }
  const values = parsed.values as OptionValues;
  const positionals = parsed.positionals;
  if (values['help'] === true) return { values, positionals, help: true };
  const [min, max] = spec.positionals;
  if (positionals.length > max) throw usageError(`${command}: unexpected argument ${JSON.stringify(positionals[max])}`);
  if (positionals.length < min) throw usageError(`${command} needs ${spec.args.split(' ').slice(positionals.length, min).join(' ')}`);
  return { values, positionals, help: false };
}

/** Usage texts wrap at this width, so that they read in an 80-to-100-column terminal. */
const usageColumns = 100;
/** Where an option's description starts. */
const optionHelpColumn = 26;

/** `text` as lines of at most usageColumns, the first starting at `column`, the others indented to it. */
function wrap(text: string, column: number): string {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line !== '' && column + line.length + 1 + word.length > usageColumns) {
      lines.push(line);
      line = word;
    } else {
      line = line === '' ? word : `${line} ${word}`;
    }
  }
  lines.push(line);
  return lines.join(`\n${' '.repeat(column)}`);
}

function optionLine(name: OptionName): string {
  const option: OptionSpec = options[name];
  const flag = `${option.short === undefined ? '    ' : `-${option.short}, `}--${name}${option.value === undefined ? '' : ` ${option.value}`}`;
  return `  ${flag.padEnd(optionHelpColumn - 2)}${wrap(option.help, optionHelpColumn)}`;
}

/** `kvshard CMD --help`. */
export function commandUsage(command: CommandName): string {
  const spec = commands[command];
  return (
    `Usage: kvshard ${command}${spec.args === '' ? '' : ` ${spec.args}`} [OPTIONS]\n\n` +
    `${spec.summary[0]!.toUpperCase()}${spec.summary.slice(1)}.\n${spec.details}\n\n` +
    `Options:\n${[...spec.options, 'help' as const].map(optionLine).join('\n')}\n\n` +
    `Exit status: ${wrap(`0 ok; ${spec.exits} (kvshard --help lists them all).`, 'Exit status: '.length)}\n`
  );
}

/** The usage line a usage error ends with. */
export function shortUsage(command: CommandName | undefined): string {
  return command === undefined
    ? 'Run kvshard --help for the commands.'
    : `Usage: kvshard ${command} ${commands[command].args} [OPTIONS]; kvshard ${command} --help for more.`;
}

const groups: readonly [string, readonly CommandName[]][] = [
  ['Data', ['get', 'set', 'del']],
  ['Cluster', ['status', 'verify', 'failover', 'check-config']],
  ['Running members', ['serve', 'drain']],
];

/** `kvshard --help`. */
export function usage(): string {
  const list = groups
    .map(
      ([title, names]) =>
        `${title}:\n${names.map((n) => `  kvshard ${n}${commands[n].args === '' ? '' : ` ${commands[n].args}`}\n      ${commands[n].summary}`).join('\n')}`,
    )
    .join('\n');
  return `kvshard: a sharded primary/replica key-value store

Usage: kvshard COMMAND [ARGUMENTS] [OPTIONS]; kvshard COMMAND --help (or kvshard help COMMAND) for one command.

${list}

Common options:
${(['endpoints', 'config', 'output', 'data-dir', 'help'] as const).map(optionLine).join('\n')}

Environment:
  KV_CONFIG         the config file when --config is not given
  KV_DATA_DIR       the data dir when --data-dir is not given
  KV_CLUSTER_TOKEN  the cluster secret for internal endpoints (verify, failover, and every member);
                    overrides token in the config. With neither, DIR/cluster.token (where launch.sh keeps it).
  KV_LOG_LEVEL      serve's and drain's log level when --log-level is not given

Values go to stdout; diagnostics and errors to stderr, an error as one line: kvshard: <code>: <message>.

Exit status (every command):
  0   ok
  1   no: the key is absent (get, del), a replica differs from its primary (verify)
  2   usage or config error: an unknown option, a missing argument, an invalid config, a bad key (empty,
      over 1024 bytes), a value over 16 MiB; serve: a data dir or an address in use
  3   cluster unavailable: no node reachable, a timeout, a 5xx answer the client gave up on
  4   unauthorized: the nodes refused the cluster token (401)
  5   refused: the cluster declined and changed nothing (failover_refused, read_only_replica, another 4xx)
  70  internal error: a bug or an I/O error; the message carries its stack
`;
}
