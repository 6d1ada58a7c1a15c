// Hosts of their own for a chaos run's members, so that one can be cut off: a Linux network namespace
// per member, each joined by a veth pair to a bridge in the root namespace on a random 10.X.Y.0/24.
// Setting a member's bridge-side link down cuts it off the way a pulled cable does: its packets vanish
// instead of being refused. The run reaches every member through the bridge's own address. The same
// construction as test/helpers/netns.ts, without vitest's hooks, since the chaos runner is a program.
// Needs Linux, root and iproute2's `ip`.

import { execFile } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { Network } from './chaos-faults.js';

/** Bound on one `ip` command: each takes milliseconds, so one that runs this long is stuck. */
const ipCommandTimeoutMs = 10_000;
const subnetAttemptsMax = 50;

/** Why namespaces cannot be made here, or undefined when they can. */
export function hostsUnavailable(): string | undefined {
  if (process.platform !== 'linux') return `network namespaces need Linux, this is ${process.platform}`;
  const uid = process.getuid?.();
  if (uid !== 0) return `network namespaces need root, this process runs as uid ${uid}`;
  const onPath = (process.env['PATH'] ?? '').split(delimiter).some((dir) => {
    try {
      accessSync(join(dir, 'ip'), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
  return onPath ? undefined : 'the `ip` command (iproute2) is not on PATH';
}

function ip(args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('ip', args, { timeout: ipCommandTimeoutMs, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`ip ${args.join(' ')}: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
  });
}

/** A random 10.X.Y.0/24 that no IPv4 route of the root namespace is inside or contains, as three octets. */
async function freeSubnet(): Promise<string> {
  const routes = JSON.parse(await ip(['-4', '-j', 'route', 'show', 'table', 'all'])) as { dst: string }[];
  const toInt = (a: string) => a.split('.').reduce((n, octet) => n * 256 + Number(octet), 0);
  const overlaps = (base: string, dst: string) => {
    const [net, bits = '32'] = dst.split('/');
    const shift = 2 ** (32 - Math.min(24, Number(bits)));
    return Math.floor(toInt(`${base}.0`) / shift) === Math.floor(toInt(net!) / shift);
  };
  for (let attempt = 0; attempt < subnetAttemptsMax; attempt++) {
    const base = `10.${randomInt(16, 255)}.${randomInt(0, 256)}`;
    if (!routes.some((r) => r.dst !== 'default' && overlaps(base, r.dst))) return base;
  }
  throw new Error(`no free 10.X.Y.0/24 subnet in ${subnetAttemptsMax} attempts`);
}

interface Host {
  readonly namespace: string;
  readonly address: string;
  readonly bridgePort: string;
}

/** A bridge with one namespace per member. Create with ChaosHosts.create(); always destroy(). */
export class ChaosHosts implements Network {
  private readonly hosts = new Map<string, Host>();
  private readonly byAddress = new Map<string, Host>();
  private bridge: string | undefined;

  private constructor(private readonly suffix: string) {}

  /** Makes a host for each of `members`; on failure removes what it made and throws. */
  static async create(members: readonly string[]): Promise<ChaosHosts> {
    const hosts = new ChaosHosts(randomBytes(3).toString('hex'));
    try {
      await hosts.build(members);
      return hosts;
    } catch (err) {
      await hosts.destroy().catch(() => undefined);
      throw err;
    }
  }

  private async build(members: readonly string[]): Promise<void> {
    const subnet = await freeSubnet();
    // Interface names are at most 15 bytes: "kc" + 6 hex digits + a tag and a member number fits.
    const bridge = `kc${this.suffix}br`;
    await ip(['link', 'add', bridge, 'type', 'bridge']);
    this.bridge = bridge;
    await ip(['addr', 'add', `${subnet}.254/24`, 'dev', bridge]);
    await ip(['link', 'set', bridge, 'up']);
    for (const [i, member] of members.entries()) {
      const host: Host = { namespace: `kvchaos-${this.suffix}-${member}`, address: `${subnet}.${i + 1}`, bridgePort: `kc${this.suffix}h${i}` };
      const inside = `kc${this.suffix}n${i}`;
      await ip(['netns', 'add', host.namespace]);
      this.hosts.set(member, host);
      await ip(['link', 'add', host.bridgePort, 'type', 'veth', 'peer', 'name', inside, 'netns', host.namespace]);
      await ip(['link', 'set', host.bridgePort, 'master', bridge, 'up']);
      await ip(['-n', host.namespace, 'link', 'set', 'lo', 'up']);
      await ip(['-n', host.namespace, 'addr', 'add', `${host.address}/24`, 'dev', inside]);
      await ip(['-n', host.namespace, 'link', 'set', inside, 'up']);
    }
  }

  /** The member's IPv4 address. */
  address(member: string): string {
    return this.hosts.get(member)!.address;
  }

  /** Records which host `hostPort` (address:port) is, for cut() and heal(). */
  bind(member: string, hostPort: string): void {
    this.byAddress.set(hostPort, this.hosts.get(member)!);
  }

  /** The words that start a command inside the member's namespace; `ip netns exec` execs the command. */
  execPrefix(member: string): string[] {
    return ['ip', 'netns', 'exec', this.hosts.get(member)!.namespace];
  }

  async cut(hostPort: string): Promise<void> {
    await ip(['link', 'set', this.byAddress.get(hostPort)!.bridgePort, 'down']);
  }

  async heal(hostPort: string): Promise<void> {
    await ip(['link', 'set', this.byAddress.get(hostPort)!.bridgePort, 'up']);
  }

  /** Removes the veth pairs, the namespaces and the bridge (stop the members first); throws if any remains. */
  async destroy(): Promise<void> {
    const failures: string[] = [];
    const hosts = [...this.hosts.values()];
    this.hosts.clear();
    for (const r of await Promise.allSettled(hosts.map((h) => ip(['link', 'del', h.bridgePort])))) if (r.status === 'rejected') failures.push(String(r.reason));
    for (const r of await Promise.allSettled(hosts.map((h) => ip(['netns', 'del', h.namespace])))) if (r.status === 'rejected') failures.push(String(r.reason));
    if (this.bridge) await ip(['link', 'del', this.bridge]).catch((err: unknown) => failures.push(String(err)));
    this.bridge = undefined;
    if (failures.length > 0) throw new Error(`network namespace cleanup failed:\n${failures.join('\n')}`);
  }
}
