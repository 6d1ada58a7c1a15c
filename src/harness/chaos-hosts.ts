// Hosts of their own for a chaos run's members, so that one can be cut off: the network of
// netns-network.ts (a namespace per member on a bridge), addressed the way the fault runner names
// members, by `host:port`. Needs Linux, root and iproute2's `ip`.

import type { Network } from './chaos-faults.js';
import { NetnsNetwork, netnsUnavailable } from './netns-network.js';

/** Why namespaces cannot be made here, or undefined when they can. */
export function hostsUnavailable(): string | undefined {
  return netnsUnavailable();
}

/** A host per member. Create with ChaosHosts.create(); always destroy(). */
export class ChaosHosts implements Network {
  /** The member at each `host:port`, for cut() and heal(). */
  private readonly byAddress = new Map<string, string>();

  private constructor(private readonly network: NetnsNetwork) {}

  /** Makes a host for each of `members`; on failure removes what it made and throws. */
  static async create(members: readonly string[]): Promise<ChaosHosts> {
    return new ChaosHosts(await NetnsNetwork.create(members));
  }

  /** The member's IPv4 address. */
  address(member: string): string {
    return this.network.host(member).address;
  }

  /** Records which member `hostPort` (address:port) is, for cut() and heal(). */
  bind(member: string, hostPort: string): void {
    this.byAddress.set(hostPort, member);
  }

  /** The words that start a command inside the member's namespace; `ip netns exec` execs the command. */
  execPrefix(member: string): string[] {
    return this.network.execPrefix(member);
  }

  async cut(hostPort: string): Promise<void> {
    await this.network.linkDown(this.byAddress.get(hostPort)!);
  }

  async heal(hostPort: string): Promise<void> {
    await this.network.linkUp(this.byAddress.get(hostPort)!);
  }

  /** Removes the veth pairs, the namespaces and the bridge (stop the members first); throws if any remains. */
  destroy(): Promise<void> {
    return this.network.destroy();
  }
}
