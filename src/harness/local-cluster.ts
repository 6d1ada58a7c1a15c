// A local cluster of real kvshard processes: writes a sharding.toml with free loopback ports (or given
// addresses) into a temporary directory, starts `kvshard serve` processes with their own LMDB data dirs,
// and stops them by PID. The integration tests and the benchmark both run on it.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

/**
 * dist/cli/cli.js, whether this module runs compiled (dist/harness/) or as TypeScript source (src/harness/,
 * under vitest): both sit two levels below the repository root.
 */
export const cliPath = resolve(import.meta.dirname, '..', '..', 'dist', 'cli', 'cli.js');

export type RoleName = 'primary' | 'replica' | 'drain';

export interface ShardLayout {
  readonly name: string;
  readonly address: string;
  readonly replica: string;
}

/**
 * Ports are drawn below Linux's ephemeral range (32768-60999): a port the kernel hands out for port 0
 * can be handed out again at once to an outgoing connection, before the node that was meant to get it
 * binds it. Drawing at random from a separate range makes that race, and two test files picking the same
 * port, unlikely; the bind check rules out ports in use.
 */
const portRangeStart = 20_000;
const portRangeSize = 12_000;
/** Attempts before giving up on finding a free port (each is one bind on 127.0.0.1). */
const portAttemptsMax = 100;
const portsHandedOut = new Set<number>();

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** A free TCP port on 127.0.0.1, not handed out before by this process. */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < portAttemptsMax; attempt++) {
    const port = portRangeStart + Math.floor(Math.random() * portRangeSize);
    if (portsHandedOut.has(port)) continue;
    if (await canBind(port)) {
      portsHandedOut.add(port);
      return port;
    }
  }
  throw new Error(`no free port found in ${portAttemptsMax} attempts`);
}

export async function layout(shardCount: number): Promise<ShardLayout[]> {
  const shards: ShardLayout[] = [];
  for (let i = 0; i < shardCount; i++) {
    shards.push({ name: `shard${i + 1}`, address: `127.0.0.1:${await freePort()}`, replica: `127.0.0.1:${await freePort()}` });
  }
  return shards;
}

/**
 * V8 flags every kvshard process runs with (launch.sh passes the same). Without them, a process that
 * has been idle serves GETs with more CPU each for many seconds: V8's memory reducer and a young
 * generation shrunk to its minimum cost extra scavenges (docs/performance.md has the numbers). The cost
 * is that an idle process keeps the heap it grew under load.
 */
export const nodeFlags: readonly string[] = ['--no-memory-reducer', '--min-semi-space-size=16'];

/** The cluster secret a local cluster's config carries unless told otherwise. */
export const localToken = 'local-cluster-token-0123456789';

export function configToml(shards: readonly ShardLayout[], extra = '', token = localToken): string {
  return (
    `token = "${token}"\n${extra}\n` +
    shards.map((s, idx) => `[[shards]]\nname = "${s.name}"\nidx = ${idx}\naddress = "${s.address}"\nreplica = "${s.replica}"\n`).join('\n')
  );
}

/** How a node is started beyond its shard and role. */
export interface StartOptions {
  /** More command-line arguments (e.g. --overwrite-replica). */
  readonly args?: readonly string[];
  /** For a primary: wait until it serves its keys (default true). */
  readonly ready?: boolean;
  /** More environment variables (e.g. KV_FAILPOINTS). */
  readonly env?: Readonly<Record<string, string>>;
}

/** How long a node may take to answer /health, and a primary to serve its keys. */
const startTimeoutMs = 60_000;
/** The tail of a node's output kept for failure messages. */
const outputCharsMax = 20_000;

/**
 * The command a node is started through, as words placed before `node`: none for a process on this
 * host, `['ip', 'netns', 'exec', NS]` for one in a network namespace. The prefix must exec node in its
 * own process, as `ip netns exec` does, so that the PID the cluster records and signals is the node's.
 */
export type CommandPrefix = (shard: string, role: RoleName) => readonly string[];

const noPrefix: CommandPrefix = () => [];

/** Which kvshard build a cluster's nodes run: `cliPath` defaults to this checkout's dist/cli/cli.js. */
export interface ClusterBuild {
  readonly cliPath?: string;
}

interface RunningNode {
  readonly proc: ChildProcess;
  readonly exited: Promise<number | null>;
  output: string;
}

export class LocalCluster {
  private readonly running = new Map<string, RunningNode>();

  private constructor(
    readonly dir: string,
    readonly dataDir: string,
    readonly configPath: string,
    public shards: ShardLayout[],
    private readonly extraToml: string,
    private readonly commandPrefix: CommandPrefix,
    /** The dist/cli/cli.js every node of this cluster runs (another checkout's, for the benchmark's A/B mode). */
    private readonly cli: string,
  ) {}

  /**
   * Writes a config for `shardCount` shards, optionally adjusted by `edit`. Nodes are started with
   * start() or startAll().
   */
  static async create(shardCount: number, edit = (shards: ShardLayout[]) => shards, extraToml = '', build: ClusterBuild = {}): Promise<LocalCluster> {
    return LocalCluster.onAddresses(edit(await layout(shardCount)), extraToml, noPrefix, build);
  }

  /**
   * Writes a config for `shards` as given, without drawing free loopback ports, and starts each node
   * through `commandPrefix`: for nodes on hosts of their own, such as network namespaces.
   */
  static onAddresses(shards: ShardLayout[], extraToml: string, commandPrefix: CommandPrefix, build: ClusterBuild = {}): LocalCluster {
    const dir = mkdtempSync(join(tmpdir(), 'kvshard-'));
    const configPath = join(dir, 'sharding.toml');
    writeFileSync(configPath, configToml(shards, extraToml));
    return new LocalCluster(dir, join(dir, 'data'), configPath, shards, extraToml, commandPrefix, build.cliPath ?? cliPath);
  }

  /** Creates a cluster and starts every primary and replica. */
  static async started(shardCount: number, build: ClusterBuild = {}): Promise<LocalCluster> {
    const cluster = await LocalCluster.create(shardCount, undefined, undefined, build);
    await cluster.startAll();
    return cluster;
  }

  address(shard: string, role: RoleName = 'primary'): string {
    const s = this.shards.find((x) => x.name === shard);
    if (!s) throw new Error(`no shard ${shard}`);
    return role === 'replica' ? s.replica : s.address;
  }

  url(shard: string, role: RoleName, path: string): string {
    return `http://${this.address(shard, role)}${path}`;
  }

  /**
   * Rewrites the config with `shards` (a resize: shards added at the end or removed from it). Running
   * nodes keep the old config until restarted.
   */
  reconfigure(shards: ShardLayout[]): void {
    this.shards = shards;
    writeFileSync(this.configPath, configToml(shards, this.extraToml));
  }

  /** A new shard with free ports, named after its position, for a grown config. */
  static async extraShard(position: number): Promise<ShardLayout> {
    return { name: `shard${position + 1}`, address: `127.0.0.1:${await freePort()}`, replica: `127.0.0.1:${await freePort()}` };
  }

  /** Stops (SIGTERM) every running node. */
  async stopAll(): Promise<void> {
    await Promise.all(
      [...this.running.keys()].map((id) => {
        const [shard, role] = id.split('-') as [string, RoleName];
        return this.stop(shard, role);
      }),
    );
  }

  /**
   * Starts `kvshard drain` for a shard removed from the config; resolves with the process's exit code
   * once it has moved every key away (or failed).
   */
  startDrain(shard: string): Promise<number | null> {
    const id = `${shard}-drain`;
    const node = this.run(shard, 'drain', [...nodeFlags, this.cli, 'drain', '--config', this.configPath, '--shard', shard, '--data-dir', this.dataDir]);
    return node.exited.then((code) => {
      if (this.running.get(id) === node) this.running.delete(id);
      return code;
    });
  }

  /** Every node as [shard, role]. */
  nodes(): [string, 'primary' | 'replica'][] {
    return this.shards.flatMap(
      (s) =>
        [
          [s.name, 'primary'],
          [s.name, 'replica'],
        ] as [string, 'primary' | 'replica'][],
    );
  }

  /** Starts every node and waits until each primary knows its layout (a new cluster's primaries learn it from each other). */
  async startAll(): Promise<void> {
    await Promise.all(this.nodes().map(([shard, role]) => this.start(shard, role)));
    await this.waitLayoutDecided();
  }

  /** Waits until each of `shards` (default: all) has learned its layout. */
  async waitLayoutDecided(shards = this.shards.map((s) => s.name), timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (const shard of shards) {
      for (;;) {
        const res = await fetch(this.url(shard, 'primary', '/status'), { signal: AbortSignal.timeout(2_000) });
        const status = (await res.json()) as { layout?: { decided?: boolean } };
        if (status.layout?.decided) break;
        if (Date.now() > deadline) throw new Error(`${shard} has not learned its layout within ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  /**
   * Starts one node with the given config file (default: the cluster's) and waits for /health and, for
   * a primary, until it serves its keys (a primary with a new data dir first hears from its replica;
   * pass `ready: false` to start one whose replica is not running, or `args: ['--overwrite-replica']`).
   */
  async start(shard: string, role: RoleName, configPath = this.configPath, options: StartOptions = {}): Promise<void> {
    const id = `${shard}-${role}`;
    if (this.running.has(id)) throw new Error(`${id} is already running`);
    const args = [...nodeFlags, this.cli, role === 'drain' ? 'drain' : 'serve', '--config', configPath, '--shard', shard, '--data-dir', this.dataDir];
    if (role === 'replica') args.push('--replica');
    args.push(...(options.args ?? []));
    const node = this.run(shard, role, args, options.env);
    await this.waitHealthy(shard, role, node);
    if (role === 'primary' && options.ready !== false) await this.waitServing(shard, node);
  }

  /** Waits until a primary serves its keys: its start-up check with its replica is done, its epochs confirmed. */
  async waitServing(shard: string, node = this.running.get(`${shard}-primary`)): Promise<void> {
    const deadline = Date.now() + startTimeoutMs;
    for (;;) {
      const res = await fetch(this.url(shard, 'primary', '/status'), { signal: AbortSignal.timeout(2_000) }).catch(() => undefined);
      const status = res?.status === 200 ? ((await res.json()) as { recovery?: { state?: string }; epochs_confirmed?: boolean }) : undefined;
      // A build from before primaries checked with their replicas has no recovery state: it serves at once.
      // A restarted primary takes writes once a peer has confirmed its epochs (older builds have none).
      if (status !== undefined && (status.recovery === undefined || status.recovery.state === 'ready') && status.epochs_confirmed !== false) return;
      if (Date.now() > deadline) throw new Error(`${shard} primary does not serve its keys: ${JSON.stringify(status?.recovery)}\n${node?.output ?? ''}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /**
   * Runs node with `args`, through the node's command prefix when it has one, records it as running under
   * `<shard>-<role>` and keeps the tail of its stdout and stderr for failure messages.
   */
  private run(shard: string, role: RoleName, args: readonly string[], env?: Readonly<Record<string, string>>): RunningNode {
    const [command, ...prefixArgs] = [...this.commandPrefix(shard, role), process.execPath];
    const proc = spawn(command!, [...prefixArgs, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: env ? { ...process.env, ...env } : process.env });
    const node: RunningNode = { proc, output: '', exited: new Promise((resolveExit) => proc.once('exit', (code) => resolveExit(code))) };
    const append = (chunk: Buffer) => {
      node.output = (node.output + chunk.toString()).slice(-outputCharsMax);
    };
    proc.stdout!.on('data', append);
    proc.stderr!.on('data', append);
    this.running.set(`${shard}-${role}`, node);
    return node;
  }

  private async waitHealthy(shard: string, role: RoleName, node: RunningNode): Promise<void> {
    const deadline = Date.now() + startTimeoutMs;
    let exited = false;
    void node.exited.then(() => (exited = true));
    while (Date.now() < deadline && !exited) {
      try {
        const res = await fetch(this.url(shard, role, '/health'), { signal: AbortSignal.timeout(1_000) });
        if (res.status === 200) return;
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`${shard} ${role} did not become healthy:\n${node.output}`);
  }

  /** SIGTERM and wait for a clean exit. */
  async stop(shard: string, role: RoleName): Promise<number | null> {
    return this.signal(shard, role, 'SIGTERM');
  }

  /** SIGSTOP: the process keeps its sockets open but answers nothing until resume(). */
  suspend(shard: string, role: RoleName): void {
    process.kill(this.pid(shard, role), 'SIGSTOP');
  }

  /** SIGCONT after suspend(). */
  resume(shard: string, role: RoleName): void {
    process.kill(this.pid(shard, role), 'SIGCONT');
  }

  /** SIGKILL: the process gets no chance to flush or close anything. */
  async kill(shard: string, role: RoleName): Promise<void> {
    await this.signal(shard, role, 'SIGKILL');
  }

  private async signal(shard: string, role: RoleName, signal: NodeJS.Signals): Promise<number | null> {
    const id = `${shard}-${role}`;
    const node = this.running.get(id);
    if (!node) throw new Error(`${id} is not running`);
    process.kill(node.proc.pid!, signal);
    const code = await node.exited;
    this.running.delete(id);
    return code;
  }

  /**
   * Whether the node started as `<shard>-<role>` runs, exited by itself (a crash, or a start it
   * refused; with its exit code or signal), or was never started or was stopped.
   */
  nodeState(shard: string, role: RoleName): { readonly state: 'running' | 'absent' } | { readonly state: 'exited'; readonly exit: string } {
    const node = this.running.get(`${shard}-${role}`);
    if (!node) return { state: 'absent' };
    if (node.proc.exitCode === null && node.proc.signalCode === null) return { state: 'running' };
    return { state: 'exited', exit: String(node.proc.exitCode ?? node.proc.signalCode) };
  }

  /** Forgets a node that exited by itself, so that it can be started again. */
  forgetExited(shard: string, role: RoleName): void {
    if (this.nodeState(shard, role).state === 'exited') this.running.delete(`${shard}-${role}`);
  }

  /** The PID of a running node. */
  pid(shard: string, role: RoleName): number {
    const node = this.running.get(`${shard}-${role}`);
    if (!node) throw new Error(`${shard}-${role} is not running`);
    return node.proc.pid!;
  }

  output(shard: string, role: RoleName): string {
    return this.running.get(`${shard}-${role}`)?.output ?? '';
  }

  /** Kills every node still running (by PID) and removes the temporary directory. */
  async destroy(): Promise<void> {
    await Promise.all(
      [...this.running.values()].map(async (node) => {
        // A node that failed to start may have exited already.
        if (node.proc.exitCode === null && node.proc.signalCode === null) process.kill(node.proc.pid!, 'SIGKILL');
        await node.exited;
      }),
    );
    this.running.clear();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
