// A primary acknowledges a write only once it is synced to disk. The primary runs under strace, which
// makes every fdatasync and fsync return `syncDelayMs` late; each write, sent one after another and
// timed from send to answer, then takes at least that long. A store that answered before its sync
// returned (or skipped the sync) answers sooner. The bound is one-sided, so a loaded machine can only
// make the writes slower, never make the test fail. A kill -9 cannot show this (restart.test.ts): the
// page cache survives the process.
//
// Back to back, a write could be held up by the sync of the write before it, still in flight, and so
// take as long even from a store that answered before its own sync. A pause longer than a sync before
// each write leaves none in flight, so the only sync a write can wait for is its own.
//
// Needs strace, allowed to trace a process; without it the test is skipped, except under CI=true, where
// it fails.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alone, Cluster, dataPath, layout, request } from '../helpers/cluster.js';
import { needsTool } from '../helpers/tool-gate.js';

/** How late strace makes every sync return: well above a write's time without it, small enough to stay fast. */
const syncDelayMs = 100;
/** Pause before each write: longer than a delayed sync, so the previous write's sync has returned. */
const pauseMs = 2 * syncDelayMs;
const setCount = 8;
const deleteCount = 2;

/**
 * Only fdatasync and fsync stop the process (seccomp-bpf filters the rest in the kernel), so the node
 * runs at nearly full speed apart from the delayed syncs.
 */
const strace = [
  'strace',
  '-f',
  '-o',
  '/dev/null',
  '--seccomp-bpf',
  '-e',
  'trace=fdatasync,fsync',
  '-e',
  `inject=fdatasync,fsync:delay_exit=${syncDelayMs * 1000}`,
];

/** Why strace cannot delay a process's syncs here, or undefined when it can: it runs `true` under strace. */
function straceUnavailable(): string | undefined {
  const [command, ...args] = strace;
  const run = spawnSync(command!, [...args, 'true'], { encoding: 'utf8', timeout: 10_000 });
  if ((run.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') return 'strace is not on PATH';
  if (run.error) return `strace did not run: ${run.error.message}`;
  if (run.status !== 0) return `strace cannot trace a process here (exit ${run.status}): ${run.stderr.trim()}`;
  return undefined;
}

/** The processes `pid` started; empty once it has exited. */
function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

const unavailable = straceUnavailable();
const runs = needsTool('sync-before-ack.test.ts', 'the sync-before-ack test', unavailable);

describe.skipIf(!runs)('a primary whose syncs are slow', () => {
  let cluster: Cluster | undefined;
  const url = (path: string) => cluster!.url('shard1', 'primary', path);

  beforeAll(async () => {
    cluster = Cluster.onAddresses(await layout(1), '', () => strace);
    await cluster.start('shard1', 'primary', undefined, alone);
  });
  afterAll(async () => {
    // The PID the cluster records is strace's, and a killed strace leaves node running, detached: kill
    // node by its own PID too, read while strace still runs.
    let traced: number[] = [];
    try {
      traced = childrenOf(cluster!.pid('shard1', 'primary'));
    } catch {
      // not running
    }
    await cluster?.destroy();
    for (const pid of traced) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  });

  it('acknowledges each write no sooner than its sync returns', async () => {
    const paths = [
      ...Array.from({ length: setCount }, (_, i) => dataPath('set', `synced-${i}`, `value-${i}`)),
      ...Array.from({ length: deleteCount }, (_, i) => dataPath('delete', `synced-${i}`)),
    ];
    const elapsedMs: number[] = [];
    for (const path of paths) {
      await new Promise((r) => setTimeout(r, pauseMs));
      const started = performance.now();
      const res = await request(url(path));
      elapsedMs.push(performance.now() - started);
      expect(res.status, `${path}: ${res.text()}`).toBe(200);
    }
    const shown = elapsedMs.map((ms) => ms.toFixed(1)).join(', ');
    console.log(`sync-before-ack: with every sync ${syncDelayMs} ms late, writes were acknowledged after ${shown} ms`);
    expect(
      elapsedMs.filter((ms) => ms < syncDelayMs),
      `writes acknowledged after ${shown} ms, sooner than a sync can return`,
    ).toEqual([]);
  });

  it('serves the acknowledged writes', async () => {
    for (let i = 0; i < setCount; i++) {
      const res = await request(url(dataPath('get', `synced-${i}`)));
      expect(res.status, `synced-${i}`).toBe(i < deleteCount ? 404 : 200);
      if (i >= deleteCount) expect(res.text()).toBe(`value-${i}`);
    }
  });
});
