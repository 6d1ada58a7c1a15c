// Hosts of their own for multi-host tests: one Linux network namespace per cluster member, each joined
// by a veth pair to a bridge in the root namespace, on a random 10.X.Y.0/24 subnet. Setting a member's
// bridge-side link down cuts it off the way a pulled cable does: its packets vanish instead of being
// refused, so peers see connects and requests time out. The test process reaches every member through
// the bridge's own address. Needs Linux, root and iproute2's `ip`.

import { readFileSync } from 'node:fs';
import { afterAll, beforeAll } from 'vitest';
import { cliPath, Cluster } from './cluster.js';
import { NetnsNetwork } from '../../src/harness/netns-network.js';

export { type Host, NetnsNetwork, netnsUnavailable } from '../../src/harness/netns-network.js';

export interface NetnsCluster {
  readonly cluster: Cluster;
  readonly network: NetnsNetwork;
  /** Member name of a node: `<shard>-<role>`. */
  member(shard: string, role: 'primary' | 'replica'): string;
}

/**
 * Before the file's tests, starts `shardCount` shards (primary and replica each) with every node on a
 * host of its own (NetnsNetwork), all on `port`; after them, kills the nodes by PID and removes the
 * network. Returns an accessor, since the cluster exists only once the hook has run.
 */
export function useNetnsCluster(shardCount: number, port: number, timeoutMs: number): () => NetnsCluster {
  const member = (shard: string, role: 'primary' | 'replica') => `${shard}-${role}`;
  let running: NetnsCluster | undefined;
  let network: NetnsNetwork | undefined;
  let cluster: Cluster | undefined;
  beforeAll(async () => {
    const names = Array.from({ length: shardCount }, (_, i) => `shard${i + 1}`);
    network = await NetnsNetwork.create(names.flatMap((name) => [member(name, 'primary'), member(name, 'replica')]));
    const net = network;
    const shards = names.map((name) => ({
      name,
      address: `${net.host(member(name, 'primary')).address}:${port}`,
      replica: `${net.host(member(name, 'replica')).address}:${port}`,
    }));
    cluster = Cluster.onAddresses(shards, '', (shard, role) => net.execPrefix(`${shard}-${role}`));
    await cluster.startAll();
    // Signals go to the recorded PID: it must be the node itself (ip exec'd it), in its namespace.
    for (const [shard, role] of cluster.nodes()) {
      const pid = cluster.pid(shard, role);
      const command = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (!command.includes(cliPath) || !net.runsIn(member(shard, role), pid)) {
        throw new Error(`${shard} ${role}: PID ${pid} (${command.replaceAll('\0', ' ')}) is not the node in its namespace`);
      }
    }
    running = { cluster, network, member };
  }, timeoutMs);
  afterAll(async () => {
    try {
      await cluster?.destroy();
    } finally {
      await network?.destroy();
    }
  }, timeoutMs);
  return () => {
    if (!running) throw new Error('the cluster has not started');
    return running;
  };
}
