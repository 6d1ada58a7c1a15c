// Per-node CPU quotas for the benchmark's `--node-cpu` option: each node process goes into a cgroup of
// its own, limited to the same fraction of a core, so that the nodes of one machine no longer lend each
// other idle CPU. The cluster then behaves like nodes on machines of their own, equal and small, where a
// cluster's throughput is bounded by its busiest node rather than by the sum of all nodes' CPU. The load
// generator (this process) stays unlimited.
//
// Needs root and a writable cgroup cpu controller: cgroup v1's `cpu` hierarchy (cpu.cfs_quota_us) or a
// cgroup v2 root that delegates `cpu` (cpu.max).

import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sleep } from '../core/backoff.js';

const v1Root = '/sys/fs/cgroup/cpu';
const v2Root = '/sys/fs/cgroup';
const periodUs = 100_000;
/** The kernel's smallest quota, 1 ms a period: 0.01 of a core. */
const coresMin = 0.01;
/** How long removing a group waits for its processes to be gone (a killed process leaves it shortly after). */
const removeWaitMs = 5_000;

type Flavour = { readonly root: string; readonly limit: (dir: string, quotaUs: number) => void };

function flavour(): Flavour {
  if (existsSync(join(v1Root, 'cpu.cfs_quota_us'))) {
    return {
      root: v1Root,
      limit: (dir, quotaUs) => {
        writeFileSync(join(dir, 'cpu.cfs_period_us'), String(periodUs));
        writeFileSync(join(dir, 'cpu.cfs_quota_us'), String(quotaUs));
      },
    };
  }
  const controllers = join(v2Root, 'cgroup.subtree_control');
  if (existsSync(controllers) && readFileSync(controllers, 'utf8').split(/\s+/).includes('cpu')) {
    return { root: v2Root, limit: (dir, quotaUs) => writeFileSync(join(dir, 'cpu.max'), `${quotaUs} ${periodUs}`) };
  }
  throw new Error('--node-cpu needs a cgroup cpu controller (cgroup v1 cpu, or v2 with cpu delegated)');
}

/** One cgroup per node process, each limited to `cores` of a core; remove() deletes them all. */
export class CpuQuotas {
  private readonly dirs: string[] = [];
  private readonly kind: Flavour;

  constructor(readonly cores: number) {
    if (!(cores >= coresMin && cores <= 64)) throw new Error(`--node-cpu takes a share of a core from ${coresMin} to 64, such as 0.25 (got ${cores})`);
    if (process.getuid?.() !== 0) throw new Error('--node-cpu needs root: it creates cgroups');
    this.kind = flavour();
  }

  /** Moves process `pid` (all its threads) into a new group of its own with the quota. */
  limit(pid: number): void {
    const dir = join(this.kind.root, `kvshard-bench-${process.pid}-${this.dirs.length}`);
    mkdirSync(dir);
    this.dirs.push(dir);
    this.kind.limit(dir, Math.round(this.cores * periodUs));
    writeFileSync(join(dir, 'cgroup.procs'), String(pid));
  }

  /**
   * Deletes the groups once their processes have exited (the caller stops them first): each is tried
   * until the shared deadline, and any that stays is reported once the others are gone.
   */
  async remove(): Promise<void> {
    const deadline = Date.now() + removeWaitMs;
    const left: string[] = [];
    for (const dir of this.dirs.splice(0)) {
      for (;;) {
        try {
          rmdirSync(dir);
          break;
        } catch (err) {
          if (Date.now() > deadline) {
            left.push(`${dir} (${(err as Error).message})`);
            break;
          }
          await sleep(50);
        }
      }
    }
    if (left.length > 0) throw new Error(`cannot remove ${left.join(', ')}`);
  }
}
