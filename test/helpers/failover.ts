// Helpers for failover tests: running `kvshard failover`, and finding which member of a shard is
// primary now (a failover swaps the roles of the members the harness names by their place in the file).

import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { compareReplica } from '../../src/cli/admin.js';
import { type Cluster, cliPath, request, testToken, waitFor } from './cluster.js';

export interface CommandResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `kvshard failover` for `shard` (bounded: the command has its own timeouts, this is a backstop). */
export function runFailover(cluster: Cluster, shard: string, force = false, extra: readonly string[] = []): Promise<CommandResult> {
  const args = [cliPath, 'failover', '--config', cluster.configPath, '--shard', shard, ...(force ? ['--force'] : []), ...extra];
  return new Promise((resolve) => {
    execFile(process.execPath, args, { timeout: 60_000, env: { ...process.env, KV_CLUSTER_TOKEN: testToken } }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** The member the harness started as `role`, by its place in the config. */
export type Member = 'primary' | 'replica';

export async function memberStatus(cluster: Cluster, shard: string, member: Member): Promise<Record<string, any>> {
  return (await request(cluster.url(shard, member, '/status'))).json();
}

/** Waits until `member` of `shard` serves as `role` and every write it took has reached the other member, with equal digests. */
export async function waitRoles(cluster: Cluster, shard: string, primary: Member, timeoutMs = 30_000): Promise<void> {
  const replica: Member = primary === 'primary' ? 'replica' : 'primary';
  let last: unknown;
  await waitFor(
    `${shard}: ${primary} member primary, converged with the other`,
    async () => {
      const p = await memberStatus(cluster, shard, primary).catch(() => undefined);
      const r = await memberStatus(cluster, shard, replica).catch(() => undefined);
      last = { p, r };
      if (p?.['role'] !== 'primary' || r?.['role'] !== 'replica') return false;
      if (!r['in_sync'] || p['replication']?.['lag_entries'] !== 0 || r['applied_seq'] !== p['last_seq']) return false;
      const comparison = await compareReplica(cluster.address(shard, primary), cluster.address(shard, replica), testToken);
      last = { p, r, comparison };
      return comparison.equal;
    },
    timeoutMs,
  ).catch((err: Error) => {
    throw new Error(`${err.message}: ${JSON.stringify(last)}`);
  });
}

/** A rollback file: its header line, and the writes it holds by key (values as text). */
export interface RollbackFile {
  readonly header: Record<string, unknown>;
  readonly writes: Map<string, string>;
}

/**
 * The newest rollback file a member's /status names, or undefined when it wrote none. Every entry line
 * must be a set with a base64 value: a line of another shape fails the caller's test.
 */
export function lastRollbackFile(status: Record<string, any>): RollbackFile | undefined {
  if (status['rollbacks']['files'] === 0) return undefined;
  const lines = readFileSync(status['rollbacks']['last']['file'], 'utf8').trim().split('\n');
  const writes = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const entry = JSON.parse(line);
    if (entry.op !== 'set' || typeof entry.key !== 'string' || typeof entry.value_base64 !== 'string') {
      throw new Error(`a rollback entry of an unexpected shape: ${line}`);
    }
    writes.set(entry.key, Buffer.from(entry.value_base64, 'base64').toString());
  }
  return { header: JSON.parse(lines[0]!), writes };
}
