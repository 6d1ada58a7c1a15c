// CPU time of one process, from /proc/PID/stat. The benchmark reads it before and after a measured run
// of the process serving the scenario and divides by the requests answered: on a shared 2-core machine
// a server's CPU per request varies far less between runs than its req/s, which follow whatever else
// the cores are doing.

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** getconf answers at once; the bound only keeps a broken system from hanging the benchmark. */
const getconfTimeoutMs = 5_000;

let ticksPerSec: number | undefined;

/** Clock ticks per second of /proc's CPU times (`getconf CLK_TCK`, normally 100), read once. */
export function clockTicksPerSec(): number {
  if (ticksPerSec === undefined) {
    const out = execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8', timeout: getconfTimeoutMs }).trim();
    const n = Number(out);
    if (!Number.isInteger(n) || n <= 0) throw new Error(`getconf CLK_TCK printed ${JSON.stringify(out)}, not a tick rate`);
    ticksPerSec = n;
  }
  return ticksPerSec;
}

/** User plus system CPU time of process `pid` so far, in clock ticks: fields 14 and 15 of /proc/PID/stat. */
export function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Field 2 is the command name in parentheses, which may itself hold spaces and parentheses, so fields
  // are counted from the last ')': the text after it starts with field 3.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[14 - 3]);
  const stime = Number(fields[15 - 3]);
  if (!Number.isInteger(utime) || !Number.isInteger(stime)) throw new Error(`/proc/${pid}/stat: no utime and stime in ${JSON.stringify(stat)}`);
  return utime + stime;
}

/**
 * Runs `load` and adds the CPU time process `pid` spent meanwhile, in µs per answered request. The
 * kernel counts CPU time in whole ticks (10 ms at 100 Hz), so each reading is off by up to one tick: a
 * 10 s run at 20,000 req/s and about 35 µs a request is about 700 ticks, so the result is within 0.3%;
 * a 3 s --quick run has about 200 ticks, within 1%.
 */
export async function withCpu<T extends { readonly requests: number }>(pid: number, load: () => Promise<T>): Promise<T & { readonly cpuUsPerReq: number }> {
  const before = cpuTicks(pid);
  const result = await load();
  const ticks = cpuTicks(pid) - before;
  return { ...result, cpuUsPerReq: ((ticks / clockTicksPerSec()) * 1e6) / result.requests };
}
