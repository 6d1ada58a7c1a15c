// `kvshard failover --shard NAME [--force]`: finds the shard's member that serves as replica now and
// asks it to take over (node/failover.ts runs the exchange). Prints the new primary and epoch and exits
// 0, or says why not and exits with a status that tells the cases apart.

import { failoverCatchUpMs, failoverPauseMs, failoverRequestTimeoutMs } from '../core/limits.js';
import type { Config, ShardConfig } from '../core/config.js';
import { tokenHeader } from '../core/wire.js';

/** Exit statuses of the command, as `kvshard --help` lists them. */
export const failoverExit = { ok: 0, usage: 2, unavailable: 3, unauthorized: 4, refused: 5 } as const;

/** The member's whole failover: the pause, the catch-up, the promotion and telling every node, with room to spare. */
const failoverCallTimeoutMs = failoverPauseMs + failoverCatchUpMs + 3 * failoverRequestTimeoutMs;

interface MemberStatus {
  readonly address: string;
  readonly role: string | undefined;
  readonly epoch: { epoch: number; primary: string } | undefined;
}

async function memberStatus(address: string): Promise<MemberStatus> {
  try {
    const res = await fetch(`http://${address}/status`, { signal: AbortSignal.timeout(failoverRequestTimeoutMs) });
    if (res.status !== 200) return { address, role: undefined, epoch: undefined };
    const body = (await res.json()) as { role?: string; epoch?: { epoch: number; primary: string } };
    return { address, role: body.role, epoch: body.epoch };
  } catch {
    return { address, role: undefined, epoch: undefined };
  }
}

/** Runs the failover of `shard`; returns the exit status. */
export async function failoverShard(
  config: Config,
  token: string,
  name: string,
  force: boolean,
  out: (line: string) => void,
  err: (line: string) => void,
): Promise<number> {
  const shard: ShardConfig | undefined = config.shards.find((s) => s.name === name);
  if (!shard) {
    err(`no shard named ${name} in ${config.file}`);
    return failoverExit.usage;
  }
  const members = await Promise.all([memberStatus(shard.address), memberStatus(shard.replica)]);
  const replica = members.find((m) => m.role === 'replica');
  if (!replica) {
    const up = members.filter((m) => m.role !== undefined);
    err(
      up.length === 0
        ? `${name}: neither member (${shard.address}, ${shard.replica}) answers: there is no replica to promote`
        : `${name}: no member serves as replica now (${up.map((m) => `${m.address}: ${m.role}`).join(', ')})`,
    );
    return up.length === 0 ? failoverExit.unavailable : failoverExit.refused;
  }
  let res: Response;
  try {
    res = await fetch(`http://${replica.address}/internal/failover`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', [tokenHeader]: token },
      body: JSON.stringify({ force }),
      signal: AbortSignal.timeout(failoverCallTimeoutMs),
    });
  } catch (e) {
    err(`${name}: ${replica.address} did not answer the failover request: ${(e as Error).message}`);
    return failoverExit.unavailable;
  }
  const body = (await res.json().catch(() => ({}))) as Record<string, unknown>;
  if (res.status === 401) {
    err("unauthorized: the cluster token does not match the nodes' (set KV_CLUSTER_TOKEN, token in the config, or the data dir's cluster.token)");
    return failoverExit.unauthorized;
  }
  if (res.status !== 200) {
    err(`${name}: ${String(body['message'] ?? `HTTP ${res.status}`)}`);
    return res.status === 409 ? failoverExit.refused : failoverExit.unavailable;
  }
  const paused = body['writes_paused_ms'];
  out(
    `${name}: ${String(body['primary'])} is primary at epoch ${String(body['epoch'])} (${String(body['kind'])}; was ${String(body['previous_primary'])} ` +
      `at epoch ${String(body['previous_epoch'])}; ${paused === null ? 'no pause' : `writes paused ${String(paused)} ms`}; ` +
      `told ${String(body['nodes_told'])} of ${String(body['nodes'])} other nodes)`,
  );
  return failoverExit.ok;
}
