// Helpers for failover tests: running `kvshard failover`, and finding which member of a shard is
// primary now (a failover swaps the roles of the members the harness names by their place in the file).

import { execFile } from 'node:child_process';
import { compareReplica } from '../../src/cli/admin.js';
import { type Cluster, cliPath, request, testToken, waitFor } from './cluster.js';

export interface CommandResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `kvshard failover` for `shard` (bounded: the command has its own timeouts, this is a backstop). */
export function runFailover(cluster: Cluster, shard: string, force = false): Promise<CommandResult> {
  const args = [cliPath, 'failover', '--config', cluster.configPath, '--shard', shard, ...(force ? ['--force'] : [])];
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
