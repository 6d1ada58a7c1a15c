// The members of a chaos run's cluster, by shard and member name (a, b): starting, killing and finding
// each, on a LocalCluster. LocalCluster names a node by the role it was started in (`primary` is member
// a, `replica` member b), which a failover makes stale; here a member's role is asked of the member.

import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { cliPath, type LocalCluster, localToken } from './local-cluster.js';
import { httpGet, jsonOf } from './chaos-http.js';
import type { ShardMembers } from './chaos-workload.js';

export type MemberName = 'a' | 'b';

/** A member's /status as the fault runner reads it, or undefined when it does not answer. */
export interface MemberState {
  readonly role: string | undefined;
  readonly epoch: number | undefined;
  readonly inSync: boolean;
  readonly complete: boolean;
}

/** What a `kvshard` command did. */
export interface CommandOutcome {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** A /status request's timeout: a member that is up answers in milliseconds. */
const statusTimeoutMs = 2_000;
/** A kvshard command's backstop: each command has deadlines of its own. */
const commandTimeoutMs = 60_000;
/** Output kept of a command, and of a node that exited by itself. */
const outputCharsMax = 2_000;

/** One rollback file: its path, header and writes (values as text). */
export interface RollbackFileRead {
  readonly file: string;
  readonly header: Record<string, unknown>;
  readonly writes: { readonly seq: number; readonly op: string; readonly key: string; readonly value?: string }[];
}

export class ChaosMembers {
  constructor(
    readonly cluster: LocalCluster,
    readonly shards: readonly ShardMembers[],
  ) {}

  address(shard: string, member: MemberName): string {
    const s = this.shards.find((x) => x.name === shard)!;
    return member === 'a' ? s.a : s.b;
  }

  private static clusterRole(member: MemberName): 'primary' | 'replica' {
    return member === 'a' ? 'primary' : 'replica';
  }

  /** Whether the member's process runs (started by this run and not exited). */
  isRunning(shard: string, member: MemberName): boolean {
    return this.cluster.nodeState(shard, ChaosMembers.clusterRole(member)).state === 'running';
  }

  /** If the member's process exited by itself, forgets it and returns the tail of its output. */
  exitedByItself(shard: string, member: MemberName): string | undefined {
    const role = ChaosMembers.clusterRole(member);
    const r = this.cluster.nodeState(shard, role);
    if (r.state !== 'exited') return undefined;
    const output = this.cluster.output(shard, role).slice(-outputCharsMax);
    this.cluster.forgetExited(shard, role);
    return `exit ${r.exit}: ${output}`;
  }

  async kill(shard: string, member: MemberName): Promise<void> {
    await this.cluster.kill(shard, ChaosMembers.clusterRole(member));
  }

  /** Starts the member and waits for /health only: which role it takes is the cluster's to decide. */
  async start(shard: string, member: MemberName): Promise<void> {
    this.exitedByItself(shard, member);
    await this.cluster.start(shard, ChaosMembers.clusterRole(member), undefined, { ready: false });
  }

  dataPath(shard: string, member: MemberName): string {
    return join(this.cluster.dataDir, `${shard}-${member}`);
  }

  deleteDataDir(shard: string, member: MemberName): void {
    rmSync(this.dataPath(shard, member), { recursive: true, force: true });
  }

  async state(shard: string, member: MemberName): Promise<MemberState | undefined> {
    const result = await httpGet(`http://${this.address(shard, member)}/status`, statusTimeoutMs);
    if (result.kind !== 'answer' || result.status !== 200) return undefined;
    const body = jsonOf(result.body);
    const epoch = (body['epoch'] as { epoch?: unknown } | undefined)?.epoch;
    return {
      role: typeof body['role'] === 'string' ? body['role'] : undefined,
      epoch: typeof epoch === 'number' ? epoch : undefined,
      inSync: body['in_sync'] === true,
      complete: body['complete'] !== false,
    };
  }

  /**
   * The member that serves as `role` now: the one that says so (of two primaries, the higher epoch's);
   * when neither does, the member the config gives that role.
   */
  async memberServing(shard: string, role: 'primary' | 'replica'): Promise<MemberName> {
    const [a, b] = await Promise.all([this.state(shard, 'a'), this.state(shard, 'b')]);
    const aIs = a?.role === role;
    const bIs = b?.role === role;
    if (aIs && bIs) return (b!.epoch ?? 0) > (a!.epoch ?? 0) ? 'b' : 'a';
    if (aIs || bIs) return aIs ? 'a' : 'b';
    return role === 'primary' ? 'a' : 'b';
  }

  /** Runs `kvshard <args>` against the cluster, with its config and token. */
  command(args: readonly string[]): Promise<CommandOutcome> {
    const argv = [cliPath, ...args, '--config', this.cluster.configPath];
    return new Promise((resolve) => {
      execFile(process.execPath, argv, { timeout: commandTimeoutMs, env: { ...process.env, KV_CLUSTER_TOKEN: localToken } }, (err, stdout, stderr) => {
        const code = err ? ((err as { code?: unknown }).code ?? null) : 0;
        resolve({ code: typeof code === 'number' ? code : null, stdout: stdout.slice(-outputCharsMax), stderr: stderr.slice(-outputCharsMax) });
      });
    });
  }

  /** Every rollback file under the member's data dir now. */
  rollbackFiles(shard: string, member: MemberName): RollbackFileRead[] {
    const dir = join(this.dataPath(shard, member), 'rollback');
    if (!existsSync(dir)) return [];
    return readdirSync(dir)
      .filter((name) => name.endsWith('.jsonl'))
      .sort()
      .map((name) => readRollbackFile(join(dir, name)));
  }
}

/** Reads a rollback file (format in docs/failover.md); a line that is not JSON (a torn write) is skipped. */
export function readRollbackFile(file: string): RollbackFileRead {
  const lines = readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '');
  const parsed = lines.flatMap((line) => {
    try {
      return [JSON.parse(line) as Record<string, unknown>];
    } catch {
      return [];
    }
  });
  const [header = {}, ...entries] = parsed;
  const writes = entries.map((e) => ({
    seq: Number(e['seq']),
    op: String(e['op']),
    key: String(e['key']),
    ...(typeof e['value_base64'] === 'string' ? { value: Buffer.from(e['value_base64'], 'base64').toString('utf8') } : {}),
  }));
  return { file, header, writes };
}
