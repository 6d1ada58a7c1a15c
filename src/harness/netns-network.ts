// Hosts of their own on one machine: a bridge with a network namespace per member, each reached at its
// own IPv4 address, and a link per member that can be set down to cut it off. Used by the partition
// tests (test/helpers/netns.ts) and by chaos runs (chaos-hosts.ts). Needs root and `ip` (iproute2).

import { execFile } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { accessSync, constants, readlinkSync, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';

/** Bound on one `ip` command: each takes milliseconds, so one that runs this long is stuck. */
const ipCommandTimeoutMs = 10_000;
/** Subnets drawn before giving up on one that no route of this machine overlaps. */
const subnetAttemptsMax = 50;
/** Members per network: their addresses are .1 to .N, and .254 is the bridge's. */
const membersMax = 253;

/** Why multi-host tests cannot run here, or undefined when they can. */
export function netnsUnavailable(): string | undefined {
  if (process.platform !== 'linux') return `network namespaces need Linux, this is ${process.platform}`;
  const uid = process.getuid?.();
  if (uid !== 0) return `creating network namespaces needs root, this process runs as uid ${uid}`;
  const onPath = (process.env['PATH'] ?? '').split(delimiter).some((dir) => {
    try {
      accessSync(join(dir, 'ip'), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
  if (!onPath) return 'the `ip` command (iproute2) is not on PATH';
  return undefined;
}

/** Runs `ip` (no shell) with a timeout; rejects with its stderr. */
function ip(args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('ip', args, { timeout: ipCommandTimeoutMs, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`ip ${args.join(' ')}: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
  });
}

function ipv4ToInt(address: string): number {
  return address.split('.').reduce((n, octet) => n * 256 + Number(octet), 0);
}

/** Whether two IPv4 prefixes share any address: one contains the other's network address. */
function prefixesOverlap(a: string, aBits: number, b: string, bBits: number): boolean {
  const bits = Math.min(aBits, bBits);
  const shift = 2 ** (32 - bits);
  return Math.floor(ipv4ToInt(a) / shift) === Math.floor(ipv4ToInt(b) / shift);
}

/** A random 10.X.Y.0/24 that no IPv4 route of the root namespace overlaps, as its first three octets. */
async function freeSubnet(): Promise<string> {
  const routes = JSON.parse(await ip(['-4', '-j', 'route', 'show', 'table', 'all'])) as { dst: string }[];
  const taken = routes.filter((r) => r.dst !== 'default').map((r) => r.dst.split('/') as [string, string?]);
  for (let attempt = 0; attempt < subnetAttemptsMax; attempt++) {
    // Random, so parallel runs on one machine are unlikely to pick the same subnet.
    const base = `10.${randomInt(16, 255)}.${randomInt(0, 256)}`;
    if (!taken.some(([dst, bits]) => prefixesOverlap(`${base}.0`, 24, dst, Number(bits ?? 32)))) return base;
  }
  throw new Error(`no free 10.X.Y.0/24 subnet in ${subnetAttemptsMax} attempts`);
}

export interface Host {
  /** The namespace the member runs in. */
  readonly namespace: string;
  /** The member's IPv4 address on the bridge's subnet. */
  readonly address: string;
  /** The veth end attached to the bridge: setting it down cuts the member off. */
  readonly bridgePort: string;
}

/** A bridge with one namespace per member. Create with NetnsNetwork.create(); always destroy(). */
export class NetnsNetwork {
  /** What exists so far, so that destroy() removes exactly that, also after a failed create(). */
  private readonly namespaces: string[] = [];
  private readonly bridgePorts: string[] = [];
  private bridge: string | undefined;
  private readonly hosts = new Map<string, Host>();
  private subnet: string | undefined;

  private constructor(private readonly suffix: string) {}

  /** The root namespace's address on the bridge: a service started there (etcd) is reachable from every member until its link goes down. */
  get bridgeAddress(): string {
    if (this.subnet === undefined) throw new Error('the network is not built');
    return `${this.subnet}.254`;
  }

  /** Creates the bridge and a namespace per member; on failure removes what it created and throws. */
  static async create(members: readonly string[]): Promise<NetnsNetwork> {
    if (members.length > membersMax) throw new Error(`at most ${membersMax} members, got ${members.length}`);
    // Interface names are at most 15 bytes: "kv" + 6 hex digits + a tag and a member number fits.
    const network = new NetnsNetwork(randomBytes(3).toString('hex'));
    try {
      await network.build(members);
      return network;
    } catch (err) {
      await network.destroy().catch((cleanupErr: unknown) => console.error(`netns cleanup after a failed setup: ${String(cleanupErr)}`));
      throw err;
    }
  }

  private async build(members: readonly string[]): Promise<void> {
    const subnet = await freeSubnet();
    this.subnet = subnet;
    const bridge = `kv${this.suffix}br`;
    await ip(['link', 'add', bridge, 'type', 'bridge']);
    this.bridge = bridge;
    await ip(['addr', 'add', `${subnet}.254/24`, 'dev', bridge]);
    await ip(['link', 'set', bridge, 'up']);
    for (const [i, member] of members.entries()) {
      const host: Host = { namespace: `kvshard-${this.suffix}-${member}`, address: `${subnet}.${i + 1}`, bridgePort: `kv${this.suffix}h${i}` };
      const inside = `kv${this.suffix}n${i}`;
      await ip(['netns', 'add', host.namespace]);
      this.namespaces.push(host.namespace);
      await ip(['link', 'add', host.bridgePort, 'type', 'veth', 'peer', 'name', inside, 'netns', host.namespace]);
      this.bridgePorts.push(host.bridgePort);
      await ip(['link', 'set', host.bridgePort, 'master', bridge, 'up']);
      await ip(['-n', host.namespace, 'link', 'set', 'lo', 'up']);
      await ip(['-n', host.namespace, 'addr', 'add', `${host.address}/24`, 'dev', inside]);
      await ip(['-n', host.namespace, 'link', 'set', inside, 'up']);
      this.hosts.set(member, host);
    }
  }

  host(member: string): Host {
    const host = this.hosts.get(member);
    if (!host) throw new Error(`no member ${member} in this network`);
    return host;
  }

  /** The words that start a command inside the member's namespace; `ip netns exec` execs the command. */
  execPrefix(member: string): string[] {
    return ['ip', 'netns', 'exec', this.host(member).namespace];
  }

  /** Whether process `pid` runs in the member's namespace (its network namespace is the same inode). */
  runsIn(member: string, pid: number): boolean {
    const inode = statSync(`/run/netns/${this.host(member).namespace}`).ino;
    return readlinkSync(`/proc/${pid}/ns/net`) === `net:[${inode}]`;
  }

  /** Cuts the member off: its bridge-side link goes down, so nothing reaches it or leaves it. */
  async linkDown(member: string): Promise<void> {
    await ip(['link', 'set', this.host(member).bridgePort, 'down']);
  }

  async linkUp(member: string): Promise<void> {
    await ip(['link', 'set', this.host(member).bridgePort, 'up']);
  }

  /**
   * Removes the veth pairs, the namespaces and the bridge, whatever the state, and throws if any of them
   * remains. Processes still in a namespace keep it alive, so stop them first. The veth pairs are
   * deleted explicitly: the kernel frees a deleted namespace's interfaces only later, in the background.
   */
  async destroy(): Promise<void> {
    const failures: string[] = [];
    const removeAll = async (names: string[], remove: (name: string) => Promise<unknown>) => {
      const results = await Promise.allSettled(names.map(remove));
      for (const r of results) if (r.status === 'rejected') failures.push(String(r.reason));
      names.length = 0;
    };
    await removeAll(this.bridgePorts, (port) => ip(['link', 'del', port]));
    await removeAll(this.namespaces, (ns) => ip(['netns', 'del', ns]));
    if (this.bridge) await removeAll([this.bridge], (bridge) => ip(['link', 'del', bridge]));
    this.bridge = undefined;
    if (failures.length > 0) throw new Error(`netns cleanup failed:\n${failures.join('\n')}`);
  }
}
