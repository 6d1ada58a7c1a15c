// The baseline of an A/B benchmark: another build of kvshard, run next to this checkout's. A git ref
// becomes a temporary worktree of its commit in os.tmpdir(), installed and built there and removed
// afterwards. A directory is another checkout whose existing dist/ is used as it is: building it would
// change someone else's working tree.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, lstatSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

/** git answers at once on a local repository; the bound only keeps a stuck command from hanging the run. */
const gitTimeoutMs = 60_000;
/** npm ci downloads packages when the cache lacks them. */
const npmCiTimeoutMs = 10 * 60_000;
const buildTimeoutMs = 5 * 60_000;
/** How long a command stopped with SIGTERM gets to exit before SIGKILL. */
const commandStopWaitMs = 10_000;
/** Output kept from a command, for the error when it fails. */
const commandOutputCharsMax = 20_000;

export interface BuildToCompare {
  /** What the report calls it: the ref and its commit, or the directory and its commit. */
  readonly label: string;
  /** Its CLI entry point under dist/. */
  readonly cliPath: string;
}

/**
 * Runs a command in `cwd` and resolves with its stdout. It gets its own process group, so a timeout or an
 * interrupted benchmark stops the commands it started too (npm runs tsc in a child of its own).
 */
function runCommand(command: string, args: readonly string[], cwd: string, timeoutMs: number, started?: (proc: ChildProcess) => void): Promise<string> {
  return new Promise((resolveRun, reject) => {
    const proc = spawn(command, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    started?.(proc);
    let stdout = '';
    let output = '';
    const append = (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(-commandOutputCharsMax);
    };
    proc.stdout!.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      append(chunk);
    });
    proc.stderr!.on('data', append);
    const timer = setTimeout(() => {
      output += `\n(stopped after ${timeoutMs} ms)`;
      stopGroup(proc, 'SIGTERM');
    }, timeoutMs);
    proc.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    proc.once('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolveRun(stdout);
      else reject(new Error(`${command} ${args.join(' ')} in ${cwd} failed (${signal ?? `exit ${code}`}):\n${output}`));
    });
  });
}

/**
 * Signals the process group of a command started by runCommand: its PID is the group's id, which stays
 * taken while any process of the group (npm's tsc, say) still runs, even after the command itself ended.
 */
function stopGroup(proc: ChildProcess, signal: NodeJS.Signals): void {
  if (proc.pid === undefined) return;
  try {
    process.kill(-proc.pid, signal);
  } catch {
    // the group has exited already
  }
}

/** The short commit of a checkout, and whether its working tree has changes not committed. */
export async function describeCheckout(dir: string): Promise<string> {
  const commit = (await runCommand('git', ['rev-parse', '--short', 'HEAD'], dir, gitTimeoutMs)).trim();
  // The results file each run appends to does not make a checkout dirty: the code measured is the same.
  const status = await runCommand('git', ['status', '--porcelain', '--untracked-files=no', '--', '.', ':!docs/bench-results.jsonl'], dir, gitTimeoutMs);
  const dirty = status.trim() !== '';
  return dirty ? `${commit} with uncommitted changes` : commit;
}

export class BaselineBuild {
  /** The temporary worktree, once `git worktree add` has been started. */
  private worktree: string | undefined;
  /** The command running for the baseline, and its end. */
  private command: { readonly proc: ChildProcess; readonly closed: Promise<void> } | undefined;
  /** Set by remove(): prepare() then stops at its next step instead of building into a removed worktree. */
  private removed = false;

  /**
   * @param ref a git ref of this repository (HEAD~1, a branch, a commit) or the path of another checkout
   * @param repoRoot this checkout, whose node_modules the worktree reuses when the lockfiles are identical
   * @param log progress messages
   */
  constructor(
    private readonly ref: string,
    private readonly repoRoot: string,
    private readonly log: (line: string) => void,
  ) {}

  /** Resolves with the baseline's CLI entry point under dist/, built if it comes from a ref. */
  async prepare(): Promise<BuildToCompare> {
    if (existsSync(this.ref) && statSync(this.ref).isDirectory()) return this.existingCheckout(resolve(this.ref));
    const rev = ['rev-parse', '--verify', '--quiet', `${this.ref}^{commit}`];
    const commit = (
      await this.run('git', rev, this.repoRoot, gitTimeoutMs).catch(() => {
        this.throwIfRemoved();
        throw new Error(`--ab ${this.ref}: neither a directory nor a commit of ${this.repoRoot}`);
      })
    ).trim();
    const dir = mkdtempSync(join(tmpdir(), 'kvshard-ab-'));
    this.worktree = dir;
    this.log(`baseline: worktree of ${this.ref} (${commit.slice(0, 12)}) in ${dir}`);
    await this.run('git', ['worktree', 'add', '--detach', dir, commit], this.repoRoot, gitTimeoutMs);
    await this.install(dir);
    return { label: `${this.ref} (${commit.slice(0, 7)})`, cliPath: this.cliOf(dir) };
  }

  /** Stops a command still running for the baseline and removes its worktree. Safe to call twice. */
  async remove(): Promise<void> {
    this.removed = true;
    if (this.command) {
      // Waits for it to end, so that it does not write into the worktree while it is removed.
      const { proc, closed } = this.command;
      stopGroup(proc, 'SIGTERM');
      const timer = setTimeout(() => stopGroup(proc, 'SIGKILL'), commandStopWaitMs);
      await closed;
      clearTimeout(timer);
    }
    const dir = this.worktree;
    if (dir === undefined) return;
    this.worktree = undefined;
    // The link to this checkout's node_modules goes first, so that nothing that removes the worktree
    // can reach through it into the packages this checkout uses.
    const modules = join(dir, 'node_modules');
    if (existsSync(modules) && lstatSync(modules).isSymbolicLink()) unlinkSync(modules);
    try {
      await runCommand('git', ['worktree', 'remove', '--force', dir], this.repoRoot, gitTimeoutMs);
    } catch (err) {
      // A worktree that git add never finished, or one git no longer knows: remove the directory and
      // let git forget whatever it still records about it.
      this.log(`baseline: git worktree remove failed, removing ${dir} directly: ${(err as Error).message.split('\n')[0]}`);
      rmSync(dir, { recursive: true, force: true });
      await runCommand('git', ['worktree', 'prune'], this.repoRoot, gitTimeoutMs);
    }
    rmSync(dir, { recursive: true, force: true });
    this.log(`baseline: removed ${dir}`);
  }

  private async existingCheckout(dir: string): Promise<BuildToCompare> {
    const cliPath = this.cliOf(dir);
    this.log(`baseline: the existing build in ${dir} (not rebuilt)`);
    return { label: `${dir} (${await describeCheckout(dir)}, its existing dist/)`, cliPath };
  }

  /**
   * Installs packages and builds. With the same lockfile as this checkout, the worktree links to this
   * checkout's node_modules instead of a second npm ci; if the build fails with the link, it falls back
   * to its own npm ci.
   */
  private async install(dir: string): Promise<void> {
    const lockfile = (root: string) => readFileSync(join(root, 'package-lock.json'));
    const modules = join(this.repoRoot, 'node_modules');
    if (existsSync(modules) && lockfile(dir).equals(lockfile(this.repoRoot))) {
      symlinkSync(modules, join(dir, 'node_modules'), 'dir');
      this.log("baseline: same package-lock.json, linked to this checkout's node_modules; npm run build");
      try {
        await this.run('npm', ['run', 'build'], dir, buildTimeoutMs);
        return;
      } catch (err) {
        this.log(`baseline: the build with linked node_modules failed, running npm ci instead: ${(err as Error).message.split('\n')[0]}`);
        unlinkSync(join(dir, 'node_modules'));
      }
    } else {
      this.log("baseline: package-lock.json differs from this checkout's: npm ci");
    }
    await this.run('npm', ['ci', '--no-audit', '--no-fund'], dir, npmCiTimeoutMs);
    this.log('baseline: npm run build');
    await this.run('npm', ['run', 'build'], dir, buildTimeoutMs);
  }

  /**
   * The CLI of a build: dist/cli/cli.js since src/ has layer folders, dist/cli.js in the flat layout before
   * them, so an A/B run can still compare against a commit from before the move.
   */
  private cliOf(dir: string): string {
    const candidates = [join(dir, 'dist', 'cli', 'cli.js'), join(dir, 'dist', 'cli.js')];
    const cliPath = candidates.find((path) => existsSync(path));
    if (cliPath === undefined) throw new Error(`${dir} has no dist/cli/cli.js (nor dist/cli.js): run npm run build there first`);
    return cliPath;
  }

  private async run(command: string, args: readonly string[], cwd: string, timeoutMs: number): Promise<string> {
    this.throwIfRemoved();
    try {
      return await runCommand(command, args, cwd, timeoutMs, (proc) => {
        this.command = { proc, closed: new Promise((resolveClosed) => proc.once('close', () => resolveClosed())) };
      });
    } finally {
      this.command = undefined;
      this.throwIfRemoved();
    }
  }

  private throwIfRemoved(): void {
    if (this.removed) throw new Error('the baseline was removed while it was prepared (interrupted)');
  }
}
