// Helpers for the observability tests: reading a node's /metrics, a series' value, and promtool.

import { spawnSync } from 'node:child_process';
import { request } from './cluster.js';

/** The text of `address`'s /metrics (status 200 checked). */
export async function scrape(address: string, headers: Record<string, string> = {}): Promise<string> {
  const res = await request(`http://${address}/metrics`, { headers });
  if (res.status !== 200) throw new Error(`/metrics of ${address} answered ${res.status}: ${res.text()}`);
  return res.text();
}

/**
 * The value of series `name` whose labels include `labels`, summed over the series that match (so
 * `kvshard_http_request_duration_seconds_count` with `{route: 'get'}` adds up every status and role);
 * undefined when none does.
 */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  let sum: number | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || !line.startsWith(name)) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const found = new Map([...(match[3] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1]!, m[2]!]));
    if (Object.entries(labels).every(([k, v]) => found.get(k) === v)) sum = (sum ?? 0) + Number(match[4]);
  }
  return sum;
}

/** Why promtool cannot run here, or undefined when it can. */
export function promtoolUnavailable(): string | undefined {
  const run = spawnSync('promtool', ['--version'], { encoding: 'utf8', timeout: 10_000 });
  if ((run.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') return 'promtool is not on PATH (Debian package prometheus)';
  if (run.error || run.status !== 0) return `promtool --version failed: ${run.error?.message ?? run.stderr}`;
  return undefined;
}

/** `promtool check metrics` on `text`: its exit status and what it printed (lint problems). */
export function promtoolCheck(text: string): { status: number | null; output: string } {
  const run = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 30_000 });
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}
