// Helpers for the online-resize tests: a bulk loader, a workload of 8 writers that keep writing while
// the cluster is restarted with a new layout (each write retried until acknowledged, so the last
// acknowledged value of every key is known), a sampler of reads during the migration, and the checks
// every resize test ends with.

import { expect } from 'vitest';
import { Agent, request as httpRequest } from 'undici';
import { movedSlotCount } from '../../src/cluster/migration-plan.js';
import type { ShardLayout } from '../../src/harness/local-cluster.js';
import { slotCount } from '../../src/core/limits.js';
import { type Cluster, ownerOf } from './cluster.js';
import { status, waitConverged } from './replication.js';

const agent = new Agent({ connections: 128, headersTimeout: 15_000, bodyTimeout: 15_000, connectTimeout: 5_000, keepAliveTimeout: 2_000 });

/** Migration settings for the resize tests: small batches with pauses, so the migration lasts long enough to be observed. */
export const slowMigration = (pauseMs: number) => `[migration]\nbatch_keys = 50\nbatch_pause_ms = ${pauseMs}\n`;

export interface Answer {
  readonly status: number;
  readonly body: string;
}

/** One HTTP GET; a connection failure is status 0 (the node is down or restarting). */
export async function get(address: string, path: string): Promise<Answer> {
  try {
    const res = await httpRequest(`http://${address}${path}`, { dispatcher: agent });
    return { status: res.statusCode, body: await res.body.text() };
  } catch (err) {
    return { status: 0, body: String((err as Error).message) };
  }
}

const pick = <T>(items: readonly T[]): T => items[Math.floor(Math.random() * items.length)]!;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The initial dataset: `k<i>` = `v<i>`. */
export const initialKey = (i: number) => `k${i}`;

/** Stores `count` keys through their owners' primaries, 64 at a time. */
export async function loadKeys(cluster: Cluster, count: number): Promise<void> {
  let next = 0;
  const shardCount = cluster.shards.length;
  await Promise.all(
    Array.from({ length: 64 }, async () => {
      while (next < count) {
        const i = next++;
        const key = initialKey(i);
        const res = await get(cluster.address(ownerOf(key, shardCount)), `/set?key=${key}&value=v${i}`);
        if (res.status !== 200) throw new Error(`loading ${key}: ${res.status} ${res.body}`);
      }
    }),
  );
}

/** Keys of the initial dataset that the writers never touch (the sampler reads these). */
export const isStable = (i: number) => i % 10 !== 0;

/**
 * 8 writers, each with keys of its own: it writes new keys, overwrites initial keys i with i % 10 === 0
 * and i % 8 === its number, and deletes some of both. Every operation is retried (on connection errors,
 * 421, 502, 503, 504) until acknowledged, so `expected` holds each key's last acknowledged state.
 */
export class Workload {
  readonly expected = new Map<string, string | null>();
  private stopped = false;
  private readonly runs: Promise<void>[];
  acknowledged = 0;
  retries = 0;

  constructor(
    private readonly cluster: Cluster,
    initialCount: number,
  ) {
    this.runs = Array.from({ length: 8 }, (_, w) => this.writer(w, initialCount));
  }

  private async writer(w: number, initialCount: number): Promise<void> {
    const own = [];
    for (let i = w * 10; i < initialCount; i += 80) own.push(initialKey(i));
    for (let n = 0; !this.stopped; n++) {
      const roll = n % 5;
      if (roll < 2) await this.apply(`w${w}-${n}`, `new-${n}`);
      else if (roll < 4) await this.apply(pick(own), `over-${w}-${n}`);
      else await this.apply(Math.random() < 0.5 ? pick(own) : `w${w}-${Math.floor(Math.random() * n)}`, null);
    }
  }

  private async apply(key: string, value: string | null): Promise<void> {
    const path = value === null ? `/delete?key=${key}` : `/set?key=${key}&value=${value}`;
    for (let attempt = 0; attempt < 1_200; attempt++) {
      const res = await get(pick(this.cluster.shards).address, path);
      if (res.status === 200) {
        this.expected.set(key, value);
        this.acknowledged++;
        return;
      }
      // 502 and 504: a node restarting or killed mid-write; the retry settles the key's state.
      if (![0, 421, 502, 503, 504].includes(res.status)) throw new Error(`${path}: unexpected ${res.status} ${res.body}`);
      this.retries++;
      await sleep(25);
    }
    throw new Error(`${path} was not acknowledged within 1200 attempts`);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.runs);
  }
}

/**
 * Reads stable keys from random nodes until stopped. A 404 or a wrong value is a failure; a node that
 * is down or answers 503 (restarting, previous owner not up yet) is counted apart.
 */
export class Sampler {
  readonly wrong: string[] = [];
  ok = 0;
  unavailable = 0;
  private stopped = false;
  private readonly runs: Promise<void>[];

  constructor(
    private readonly cluster: Cluster,
    initialCount: number,
  ) {
    this.runs = Array.from({ length: 16 }, async () => {
      while (!this.stopped) {
        let i = Math.floor(Math.random() * initialCount);
        if (!isStable(i)) i++;
        const shard = pick(this.cluster.shards);
        const res = await get(Math.random() < 0.5 ? shard.address : shard.replica, `/get?key=${initialKey(i)}`);
        if (res.status === 200 && res.body === `v${i}`) this.ok++;
        else if (res.status === 0 || res.status === 503 || res.status === 421) this.unavailable++;
        else this.wrong.push(`${initialKey(i)} from ${shard.name}: ${res.status} ${res.body.slice(0, 200)}`);
      }
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.runs);
  }
}

/** Starts `cluster`, stores `count` keys and starts the writers; returns the layout before the resize. */
export async function startLoaded(cluster: Cluster, count: number): Promise<{ before: ShardLayout[]; workload: Workload }> {
  await cluster.startAll();
  await loadKeys(cluster, count);
  return { before: [...cluster.shards], workload: new Workload(cluster, count) };
}

/** Waits for the migration to finish, lets the writers go on a moment, then stops writers and sampler. */
export async function finishResize(cluster: Cluster, workload: Workload, sampler: Sampler): Promise<Record<string, any>[]> {
  const statuses = await waitMigrated(cluster);
  await sleep(300);
  await Promise.all([workload.stop(), sampler.stop()]);
  return statuses;
}

/** Waits until every primary reports its migration done; returns their statuses. */
export async function waitMigrated(cluster: Cluster, timeoutMs = 120_000): Promise<Record<string, any>[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const statuses = await Promise.all(cluster.shards.map((s) => status(cluster, s.name, 'primary')));
    if (statuses.every((s) => s['layout']['decided'] && s['migration']?.['state'] === 'done')) return statuses;
    if (Date.now() > deadline) throw new Error(`migration not done within ${timeoutMs} ms: ${JSON.stringify(statuses.map((s) => s['migration']))}`);
    await sleep(100);
  }
}

/**
 * The checks every resize ends with: each key holds its last acknowledged value (deleted keys 404),
 * each primary holds exactly the keys it owns now (so no key is left anywhere else), replicas equal
 * their primaries, and the slots moved are exactly those whose owner changed.
 */
export async function verifyResize(cluster: Cluster, before: readonly ShardLayout[], initialCount: number, workload: Workload): Promise<void> {
  const shardCount = cluster.shards.length;
  const expected = new Map<string, string | null>();
  for (let i = 0; i < initialCount; i++) expected.set(initialKey(i), `v${i}`);
  for (const [key, value] of workload.expected) expected.set(key, value);

  const entries = [...expected];
  const mismatches: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: 64 }, async () => {
      while (next < entries.length) {
        const [key, value] = entries[next++]!;
        const res = await get(cluster.address(ownerOf(key, shardCount)), `/get?key=${key}`);
        const ok = value === null ? res.status === 404 : res.status === 200 && res.body === value;
        if (!ok && mismatches.length < 20) mismatches.push(`${key}: expected ${value ?? '404'}, got ${res.status} ${res.body.slice(0, 100)}`);
      }
    }),
  );
  expect(mismatches).toEqual([]);

  const liveByShard = new Map<string, number>();
  for (const [key, value] of expected) {
    if (value !== null) liveByShard.set(ownerOf(key, shardCount), (liveByShard.get(ownerOf(key, shardCount)) ?? 0) + 1);
  }
  const statuses = await Promise.all(cluster.shards.map((s) => status(cluster, s.name, 'primary')));
  expect(Object.fromEntries(statuses.map((s) => [s['shard'], s['keys']]))).toEqual(
    Object.fromEntries(cluster.shards.map((s) => [s.name, liveByShard.get(s.name) ?? 0])),
  );
  for (const shard of cluster.shards) {
    const comparison = await waitConverged(cluster, shard.name, 60_000);
    expect(comparison.keys).toBe(liveByShard.get(shard.name) ?? 0);
  }

  const moved = movedSlotCount(
    before.map((s, idx) => ({ ...s, idx })),
    cluster.shards.map((s, idx) => ({ ...s, idx })),
  );
  const received = statuses.reduce((n, s) => n + s['migration']['slots_received'], 0);
  expect(received).toBe(moved);
  expect(((moved / slotCount) * 100).toFixed(1)).toBe('25.0');
}
