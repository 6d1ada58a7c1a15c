// Running the kvshard command line as a user does: a process of its own, bytes in on stdin, bytes out on
// stdout (kept as a Buffer, so binary values compare exactly), its exit status.

import { spawn } from 'node:child_process';
import { cliPath } from './cluster.js';

export interface CliResult {
  /** The exit status, or null when the process was killed (by the timeout). */
  readonly code: number | null;
  readonly stdout: Buffer;
  readonly stderr: string;
}

export interface CliOptions {
  /** What the process reads on stdin; nothing (an empty stdin) by default. */
  readonly input?: Buffer | string;
  /** Added to an environment that has no KV_CONFIG, KV_DATA_DIR or KV_CLUSTER_TOKEN of its own. */
  readonly env?: Record<string, string>;
  readonly cwd?: string;
  /** A backstop: each command has deadlines of its own (default 30 s). */
  readonly timeoutMs?: number;
}

/** Runs `node dist/cli/cli.js ...args` and resolves once it has exited. */
export function runCli(args: readonly string[], options: CliOptions = {}): Promise<CliResult> {
  const env = { ...process.env, KV_CONFIG: '', KV_DATA_DIR: '', KV_CLUSTER_TOKEN: '', ...options.env };
  const child = spawn(process.execPath, [cliPath, ...args], { env, cwd: options.cwd, timeout: options.timeoutMs ?? 30_000, stdio: 'pipe' });
  const stdout: Buffer[] = [];
  const stderr: Buffer[] = [];
  child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
  child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
  // A command that does not read stdin may exit before it is written: that is not the test's failure.
  child.stdin.on('error', () => undefined);
  child.stdin.end(options.input ?? '');
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr).toString('utf8') }));
  });
}
