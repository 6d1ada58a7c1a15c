// One process per data dir. LMDB itself lets several processes open one environment, so nothing else
// stops a second `kvshard serve` on a running node's data: two primaries writing one dataset.
//
// The lock is a listening Unix socket in Linux's abstract namespace, named after the data dir's device
// and inode. Only one process can listen on a name, and the kernel frees it when that process dies, so
// `kill -9` never leaves a stale lock (a PID file would, and its PID may be reused). A process that finds
// the name taken connects to it, and the holder answers with its PID and what it runs. Abstract names
// are per network namespace, so the lock holds among processes of one namespace (one host).

import { mkdirSync, statSync } from 'node:fs';
import net from 'node:net';
import { dirname } from 'node:path';
import { lockHolderAnswerBytesMax, lockHolderAnswerTimeoutMs } from '../core/limits.js';

/** The data dir is held by another process, or could not be created or locked: a start-up refusal. */
export class StartupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StartupError';
  }
}

/**
 * Creates `path` (and missing parents) with mode 700. Returns the topmost directory it created, to be
 * removed again if the start fails, or undefined when `path` already existed.
 */
export function createPrivateDir(path: string): string | undefined {
  let topmost: string | undefined;
  for (let dir = path; ; dir = dirname(dir)) {
    try {
      statSync(dir);
      break;
    } catch {
      topmost = dir;
      if (dirname(dir) === dir) break;
    }
  }
  try {
    mkdirSync(path, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new StartupError(`cannot create the data dir ${path}: ${(err as Error).message}`);
  }
  return topmost;
}

export class DataDirLock {
  private constructor(
    private readonly server: net.Server,
    readonly path: string,
  ) {}

  /** Takes the lock of `path` (which must exist) for this process, described to others as `holder`. */
  static async acquire(path: string, holder: string): Promise<DataDirLock> {
    const { dev, ino } = statSync(path);
    const name = `\0kvshard-data-dir:${dev}:${ino}`;
    const server = net.createServer((socket) => {
      socket.on('error', () => undefined);
      socket.end(`${process.pid} ${holder}`);
    });
    // The lock must never keep the process alive on its own.
    server.unref();
    const taken = await new Promise<boolean>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => (err.code === 'EADDRINUSE' ? resolve(true) : reject(err)));
      server.listen(name, () => resolve(false));
    }).catch((err: Error) => {
      throw new StartupError(`cannot lock the data dir ${path}: ${err.message}`);
    });
    if (taken) {
      const who = await askHolder(name);
      throw new StartupError(`the data dir ${path} is in use by ${who ? `PID ${who}` : 'another process'}; one data dir serves one process at a time`);
    }
    return new DataDirLock(server, path);
  }

  /** Frees the lock (the kernel also frees it when the process dies). Safe to call twice. */
  release(): Promise<void> {
    return new Promise((resolve) => {
      if (!this.server.listening) return resolve();
      this.server.close(() => resolve());
    });
  }
}

/** The holder's answer ("PID what-it-runs"), or undefined when it does not give one in time. */
function askHolder(name: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = net.connect(name);
    let answer = '';
    const done = (value: string | undefined) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(value);
    };
    const timer = setTimeout(() => done(undefined), lockHolderAnswerTimeoutMs);
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      answer += chunk;
      if (answer.length > lockHolderAnswerBytesMax) done(undefined);
    });
    socket.on('end', () => done(/^\d+ /.test(answer) ? `${answer.replace(' ', ' (')})` : undefined));
    socket.on('error', () => done(undefined));
  });
}
