// The benchmark's scenarios and what running one takes: the keys each shard owns, the preload of the
// keys the GET scenarios read, and one measured run against the node a scenario targets, with that
// process's CPU time. Both the comparison with the node:http reference (bench.ts) and the comparison of
// two builds (ab-compare.ts) run them.

import http from 'node:http';
import type { LocalCluster } from '../harness/local-cluster.js';
import { jumpHash, keySlot } from '../core/slots.js';
import { runLoad, type LoadResult, type RequestMix, type Tool } from './load-generator.js';
import { withCpu } from './process-cpu.js';

export const shardCount = 3;
export const connections = 64;
export const value100 = 'v'.repeat(100);
/** Keys per shard that the GET scenarios read, written before any scenario runs. */
const getKeysPerShard = 1000;
/** A loopback request answers in milliseconds; this only bounds a node that has stopped answering. */
const httpGetTimeoutMs = 10_000;

export interface Settings {
  readonly durationS: number;
  readonly warmupS: number;
  readonly pairs: number;
  readonly bulkKeys: number;
  readonly tool: Tool;
}

export interface Scenario {
  readonly name: string;
  readonly shard: string;
  readonly role: 'primary' | 'replica';
  readonly mix: RequestMix;
  /** Shards whose replication lag is sampled during the run (write scenarios). */
  readonly lagShards: readonly string[];
}

/** One measured run of a scenario, with the CPU time of the process the load generator targets. */
export type Run = LoadResult & { readonly cpuUsPerReq: number };

function ownerIdx(key: string): number {
  return jumpHash(keySlot(Buffer.from(key)), shardCount);
}

/** Keys owned by shard `idx`: `count` of them, named prefix + n. */
export function ownedKeys(idx: number, count: number, prefix: string): string[] {
  const keys: string[] = [];
  for (let n = 0; keys.length < count; n++) if (ownerIdx(`${prefix}${n}`) === idx) keys.push(`${prefix}${n}`);
  return keys;
}

/** Hash tags (percent-encoded `{tag}`) whose keys all live on shard `idx`. */
export function ownedTags(idx: number, count: number): string[] {
  return ownedKeys(idx, count, 't').map((tag) => `%7B${tag}%7D`);
}

const agent = new http.Agent({ keepAlive: true, maxSockets: connections });

export function httpGet(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent, timeout: httpGetTimeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`timeout: ${url}`)));
    req.on('error', reject);
  });
}

/** Closes httpGet's keep-alive connections, which would otherwise keep the process alive. */
export function closeHttpGets(): void {
  agent.destroy();
}

/** Writes the keys the GET scenarios read to each shard's primary. */
export async function preloadGetKeys(cluster: LocalCluster): Promise<void> {
  for (let idx = 0; idx < shardCount; idx++) {
    const primary = cluster.address(`shard${idx + 1}`, 'primary');
    const answers = await Promise.all(ownedKeys(idx, getKeysPerShard, 'g').map((k) => httpGet(`http://${primary}/set?key=${k}&value=${value100}`)));
    const failed = answers.filter((a) => a.status !== 200);
    if (failed.length > 0) throw new Error(`preload of shard${idx + 1}: ${failed.length} SETs failed, the first with ${failed[0]!.status} ${failed[0]!.body}`);
  }
}

export function scenarios(): Scenario[] {
  const getsOf = (idx: number) => ownedKeys(idx, getKeysPerShard, 'g').map((k) => `/get?key=${k}`);
  const tags0 = ownedTags(0, 64);
  const none = { setEvery: 0, setPrefixes: [''], setValue: value100, setExtra: '' };
  return [
    { name: 'GET at the owner', shard: 'shard1', role: 'primary', mix: { gets: getsOf(0), ...none }, lagShards: [] },
    { name: 'GET at a replica', shard: 'shard1', role: 'replica', mix: { gets: getsOf(0), ...none }, lagShards: [] },
    { name: 'GET forwarded by a non-owner', shard: 'shard1', role: 'primary', mix: { gets: getsOf(1), ...none }, lagShards: [] },
    {
      name: 'SET new keys at the owner',
      shard: 'shard1',
      role: 'primary',
      mix: { gets: [], setEvery: 1, setPrefixes: tags0, setValue: value100, setExtra: '' },
      lagShards: ['shard1'],
    },
    {
      name: 'SET random keys through one node',
      shard: 'shard1',
      role: 'primary',
      mix: { gets: [], setEvery: 1, setPrefixes: ['r'], setValue: value100, setExtra: '' },
      lagShards: ['shard1', 'shard2', 'shard3'],
    },
    {
      name: '90/10 GET/SET at the owner',
      shard: 'shard1',
      role: 'primary',
      mix: { gets: getsOf(0), setEvery: 10, setPrefixes: tags0, setValue: value100, setExtra: '' },
      lagShards: ['shard1'],
    },
    {
      name: 'SET ack=replica at the owner',
      shard: 'shard1',
      role: 'primary',
      mix: { gets: [], setEvery: 1, setPrefixes: tags0, setValue: value100, setExtra: '&ack=replica' },
      lagShards: ['shard1'],
    },
  ];
}

/** The scenarios whose name contains `only` (any case), or all of them. */
export function chosenScenarios(only: string | undefined): Scenario[] {
  return scenarios().filter((s) => !only || s.name.toLowerCase().includes(only.toLowerCase()));
}

function scenarioLoad(settings: Settings, cluster: LocalCluster, scenario: Scenario, durationS: number): Promise<LoadResult> {
  return runLoad(settings.tool, { baseUrl: `http://${cluster.address(scenario.shard, scenario.role)}`, mix: scenario.mix, durationS, connections });
}

/** An unmeasured run of settings.warmupS, so the measured runs start with a warm process. */
export async function warmUp(settings: Settings, cluster: LocalCluster, scenario: Scenario): Promise<void> {
  await scenarioLoad(settings, cluster, scenario, settings.warmupS);
}

/**
 * One run of settings.durationS with the CPU time of the process the load generator targets: the owner,
 * the replica, or the node that forwards.
 */
export function measuredRun(settings: Settings, cluster: LocalCluster, scenario: Scenario): Promise<Run> {
  return withCpu(cluster.pid(scenario.shard, scenario.role), () => scenarioLoad(settings, cluster, scenario, settings.durationS));
}
