// A single-member etcd of its own for tests, chaos runs and the benchmark: Debian's `etcd-server` binary
// on two free ports (of loopback, or of a given address, or on a host of its own in a network namespace)
// with a temporary data dir, started and stopped by PID.

import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './local-cluster.js';

/** Where Debian's etcd-server package puts the binary. */
export const etcdBinary = '/usr/bin/etcd';

/** Why a local etcd cannot start here, or undefined when it can. */
export function etcdUnavailable(): string | undefined {
  return existsSync(etcdBinary) ? undefined : `${etcdBinary} is missing (Debian package etcd-server)`;
}

/** How long etcd may take to answer after it starts (it is usually up within 3 s). */
const startTimeoutMs = 30_000;
/** etcd's own ports, used on a host of its own, where nothing else listens. */
const clientPortOnHost = 2379;
const peerPortOnHost = 2380;

export class LocalEtcd {
  private proc: ChildProcess | undefined;
  private output = '';
  private closed = false;

  private constructor(
    /** The client endpoint, `127.0.0.1:port`. */
    readonly endpoint: string,
    private readonly peerPort: number,
    private readonly host: string,
    private readonly dir: string,
    /** The words that start etcd inside its network namespace (`ip netns exec NS`), or none. */
    private readonly commandPrefix: readonly string[],
  ) {}

  /** Starts etcd with a new data dir, listening on `host` (loopback by default; a bridge's address to serve network namespaces). */
  static async start(host = '127.0.0.1'): Promise<LocalEtcd> {
    return LocalEtcd.started(new LocalEtcd(`${host}:${await freePort()}`, await freePort(), host, mkdtempSync(join(tmpdir(), 'kvshard-etcd-')), []));
  }

  /** Runs `etcd`; one that does not answer in time is killed and its dir removed. */
  private static async started(etcd: LocalEtcd): Promise<LocalEtcd> {
    try {
      await etcd.run();
      return etcd;
    } catch (err) {
      await etcd.close();
      throw err;
    }
  }

  /**
   * Starts etcd on a host of its own: inside the network namespace that `commandPrefix` enters, at the
   * namespace's address `host`, on etcd's usual ports. Cutting that host off cuts every member off etcd.
   */
  static async startOnHost(host: string, commandPrefix: readonly string[]): Promise<LocalEtcd> {
    return LocalEtcd.started(new LocalEtcd(`${host}:${clientPortOnHost}`, peerPortOnHost, host, mkdtempSync(join(tmpdir(), 'kvshard-etcd-')), commandPrefix));
  }

  /** Starts the process again on the same ports and data (after stop() or kill()). */
  async run(): Promise<void> {
    if (this.proc !== undefined) throw new Error('etcd is running');
    // A run's cleanup may close etcd while a fault is about to start it again.
    if (this.closed) throw new Error('etcd was closed');
    const client = `http://${this.endpoint}`;
    const peer = `http://${this.host}:${this.peerPort}`;
    const args = ['--name', 'n1', '--data-dir', join(this.dir, 'data'), '--listen-client-urls', client, '--advertise-client-urls', client];
    args.push('--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer, '--initial-cluster', `n1=${peer}`);
    // `ip netns exec` execs etcd, so the PID is etcd's own.
    const [command, ...prefixArgs] = [...this.commandPrefix, etcdBinary];
    const proc = spawn(command!, [...prefixArgs, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    const keep = (chunk: Buffer) => {
      this.output = (this.output + chunk.toString('utf8')).slice(-64 * 1024);
    };
    proc.stdout!.on('data', keep);
    proc.stderr!.on('data', keep);
    proc.on('exit', () => {
      if (this.proc === proc) this.proc = undefined;
    });
    const deadline = Date.now() + startTimeoutMs;
    while (Date.now() < deadline) {
      if (this.proc !== proc) throw new Error(`etcd exited at start: ${this.output.slice(-2000)}`);
      const res = await fetch(`${client}/v3/kv/range`, { method: 'POST', body: '{"key":"AA=="}', signal: AbortSignal.timeout(1_000) }).catch(() => undefined);
      if (res?.status === 200) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`etcd did not answer within ${startTimeoutMs} ms: ${this.output.slice(-2000)}`);
  }

  /** A `[coordinator]` section naming this etcd, for a test or benchmark cluster's config (`more`: further keys, as TOML lines). */
  coordinatorToml(settings: { readonly leaseTtlMs?: number; readonly prefix?: string; readonly more?: string } = {}): string {
    const ttl = settings.leaseTtlMs === undefined ? '' : `lease_ttl_ms = ${settings.leaseTtlMs}\n`;
    const prefix = settings.prefix === undefined ? '' : `prefix = "${settings.prefix}"\n`;
    return `[coordinator]\netcd = ["${this.endpoint}"]\n${ttl}${prefix}${settings.more ?? ''}`;
  }

  /** Whether etcd's process runs (started and not exited). */
  get running(): boolean {
    return this.proc !== undefined;
  }

  /** SIGTERM, and waits for the exit. */
  stop(): Promise<void> {
    return this.signal('SIGTERM');
  }

  /** SIGKILL, and waits for the exit. */
  kill(): Promise<void> {
    return this.signal('SIGKILL');
  }

  /** kill -9, its data deleted, started again empty on the same ports: etcd's data lost. */
  async wipe(): Promise<void> {
    await this.kill();
    this.deleteData();
    await this.run();
  }

  /** Deletes etcd's data; stop it first. */
  deleteData(): void {
    if (this.proc !== undefined) throw new Error('etcd is running');
    rmSync(join(this.dir, 'data'), { recursive: true, force: true });
  }

  /** Stops etcd and removes its data dir. */
  async close(): Promise<void> {
    this.closed = true;
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }

  private async signal(signal: NodeJS.Signals): Promise<void> {
    const proc = this.proc;
    if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    process.kill(proc.pid!, signal);
    await exited;
  }
}
