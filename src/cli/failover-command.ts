// `kvshard failover --shard NAME [--force]`: finds the shard's member that serves as replica now and
// asks it to take over (node/failover.ts runs the exchange). Answers the member's report of the new
// primary and epoch, or fails with a command error whose exit status tells the cases apart.

import { failoverCatchUpMs, failoverPauseMs, failoverRequestTimeoutMs, grantRequestTimeoutMs } from '../core/limits.js';
import type { ShardConfig } from '../core/config.js';
import { type AdminClient, adminError, answerMessage, withAdminClient } from './admin-client.js';
import { CommandError, exitStatus } from './exit-status.js';

/**
 * The member's whole failover: the pause, the catch-up, the grants (a forced one waits up to a node
 * timeout for the nodes to stop hearing the primary), the promotion and telling every node, with room to spare.
 */
function failoverCallTimeoutMs(nodeTimeoutMs: number): number {
  return failoverPauseMs + failoverCatchUpMs + 3 * failoverRequestTimeoutMs + nodeTimeoutMs + 2 * grantRequestTimeoutMs;
}

export interface FailoverOptions {
  readonly force: boolean;
  readonly withoutMajority: boolean;
  /** The config's node_timeout_ms: a forced failover may wait that long for grants. */
  readonly nodeTimeoutMs: number;
}

interface MemberStatus {
  readonly address: string;
  readonly role: string | undefined;
  readonly epoch: { epoch: number; primary: string } | undefined;
}

/** A member's role and epoch, or neither when it does not answer within a failover request's timeout. */
async function memberStatus(client: AdminClient, address: string): Promise<MemberStatus> {
  try {
    const body = await client.get<{ role?: string; epoch?: { epoch: number; primary: string } }>(address, '/status', { timeoutMs: failoverRequestTimeoutMs });
    return { address, role: body.role, epoch: body.epoch };
  } catch {
    return { address, role: undefined, epoch: undefined };
  }
}

/** What the promoted member answers: the new primary and epoch, the previous ones, how long writes paused. */
export type FailoverReport = Readonly<Record<string, unknown>>;

/** The member of `shard` that serves as replica now, and the other; a command error when there is none to promote. */
async function replicaNow(client: AdminClient, shard: ShardConfig, where: string): Promise<{ replica: MemberStatus; other: MemberStatus }> {
  const members = await Promise.all([memberStatus(client, shard.address), memberStatus(client, shard.replica)]);
  const replica = members.find((m) => m.role === 'replica');
  if (replica) return { replica, other: members.find((m) => m !== replica)! };
  const up = members.filter((m) => m.role !== undefined);
  if (up.length === 0) {
    const both = `${shard.address}, ${shard.replica}`;
    throw new CommandError('unavailable', `${shard.name}: neither member (${both}) answers: there is no replica to promote`, exitStatus.unavailable);
  }
  const down = members.filter((m) => m.role === undefined).map((m) => `${m.address} does not answer`);
  const roles = [...up.map((m) => `${m.address} serves as ${m.role}`), ...down].join(', ');
  throw new CommandError('failover_refused', `${shard.name} (${where}): no member serves as replica now: ${roles}`, exitStatus.refused);
}

/**
 * --force is for a primary that is down. replicaNow() asked both members: when the other one answered
 * (it serves as primary, or anything else), forcing would leave two members taking writes.
 */
function refuseLivePrimary(shard: ShardConfig, other: MemberStatus): void {
  if (other.role === undefined) return;
  throw new CommandError(
    'failover_refused',
    `${shard.name}: ${other.address} answers (it serves as ${other.role}): --force is for a primary that is down; ` +
      'run the failover without --force (a switchover, which loses nothing)',
    exitStatus.refused,
  );
}

/** Runs the failover of shard `name` of `shards` (listed in `where`, for messages); resolves with the promoted member's report. */
export async function failoverShard(
  shards: readonly ShardConfig[],
  where: string,
  token: string,
  name: string,
  { force, withoutMajority, nodeTimeoutMs }: FailoverOptions,
): Promise<FailoverReport> {
  const shard = shards.find((s) => s.name === name);
  if (!shard)
    throw new CommandError('usage', `no shard named ${JSON.stringify(name)} in ${where} (shards: ${shards.map((s) => s.name).join(', ')})`, exitStatus.usage);
  return withAdminClient(token, async (client) => {
    const { replica, other } = await replicaNow(client, shard, where);
    if (force) refuseLivePrimary(shard, other);
    try {
      return await client.post<FailoverReport>(
        replica.address,
        '/internal/failover',
        { force, without_majority: withoutMajority },
        { timeoutMs: failoverCallTimeoutMs(nodeTimeoutMs) },
      );
    } catch (err) {
      const e = adminError(err);
      if (e.code === 'unauthorized') throw e;
      const refusal = answerMessage(err);
      if (refusal !== undefined) throw new CommandError(e.code, `${name}: ${refusal}`, e.exit);
      const why = e.code === 'timeout' ? 'no answer before the deadline' : ((err as { code?: string }).code ?? e.message);
      throw new CommandError(e.code, `${name}: ${replica.address} did not answer the failover request: ${why}`, e.exit);
    }
  });
}

/** The report as the line `kvshard failover` prints. */
export function failoverLine(name: string, body: FailoverReport): string {
  const paused = body['writes_paused_ms'];
  return (
    `${name}: ${String(body['primary'])} is primary at epoch ${String(body['epoch'])} (${String(body['kind'])}; was ${String(body['previous_primary'])} ` +
    `at epoch ${String(body['previous_epoch'])}; ${paused === null ? 'no pause' : `writes paused ${String(paused)} ms`}; ` +
    `granted by ${String(body['grants'])}${body['without_majority'] === true ? ', WITHOUT A MAJORITY' : ''}; ` +
    `told ${String(body['nodes_told'])} of ${String(body['nodes'])} other nodes)`
  );
}
