// Failpoints, as etcd's gofail has them: named places where a test makes a process wait, to put a fault
// (a crash, a cut link) into a window too short to hit from outside. Set by the environment only
// (KV_FAILPOINTS="name=ms,name=ms"), read once; a process without it pays one Map lookup per failpoint.

import { sleep } from './backoff.js';

const delays = new Map<string, number>();
for (const entry of (process.env['KV_FAILPOINTS'] ?? '').split(',')) {
  const [name, ms] = entry.split('=');
  const n = Number(ms);
  if (name && Number.isSafeInteger(n) && n > 0 && n <= 60_000) delays.set(name.trim(), n);
}

/** Waits as long as failpoint `name` says (not at all unless KV_FAILPOINTS names it). */
export async function failpoint(name: string): Promise<void> {
  const ms = delays.get(name);
  if (ms !== undefined) await sleep(ms);
}
