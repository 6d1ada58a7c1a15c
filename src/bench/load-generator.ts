// Drives HTTP load for one benchmark scenario: wrk when it is installed (it costs the shared cores
// least), otherwise autocannon from npm. Both get the same request mix, 64 keep-alive connections.

import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import autocannon from 'autocannon';
import { Pool } from 'undici';

const run = promisify(execFile);

/** What a scenario sends: GETs of fixed paths, and every `setEvery`-th request a SET of a new key. */
export interface RequestMix {
  /** Paths to GET, in rotation. */
  readonly gets: readonly string[];
  /** Every setEvery-th request is a SET (1: all, 0: none). */
  readonly setEvery: number;
  /** Percent-encoded key prefixes for new keys, in rotation (hash tags pin them to a shard); [''] = random. */
  readonly setPrefixes: readonly string[];
  /** The value of every SET, already percent-encoded. */
  readonly setValue: string;
  /** Extra query for SETs, e.g. `&ack=replica`. */
  readonly setExtra: string;
}

export interface LoadResult {
  /** Requests answered during the run (any status): the divisor for the server's CPU per request. */
  readonly requests: number;
  readonly requestsPerSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly non2xx: number;
  readonly errors: number;
}

export interface LoadOptions {
  readonly baseUrl: string;
  readonly mix: RequestMix;
  readonly durationS: number;
  readonly connections: number;
}

export type Tool = 'wrk' | 'autocannon';

export async function detectTool(wanted?: string): Promise<Tool> {
  if (wanted === 'wrk' || wanted === 'autocannon') return wanted;
  try {
    await run('wrk', ['--version'], { timeout: 5_000 });
    return 'wrk';
  } catch (err) {
    // wrk --version exits 1 after printing its version; only a missing binary means no wrk.
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'autocannon' : 'wrk';
  }
}

export function runLoad(tool: Tool, options: LoadOptions): Promise<LoadResult> {
  return tool === 'wrk' ? runWrk(options) : runAutocannon(options);
}

function luaString(s: string): string {
  return JSON.stringify(s);
}

function wrkScript(mix: RequestMix): string {
  return `
local gets = { ${mix.gets.map(luaString).join(', ')} }
local prefixes = { ${mix.setPrefixes.map(luaString).join(', ')} }
local setEvery = ${mix.setEvery}
local value = ${luaString(mix.setValue)}
local extra = ${luaString(mix.setExtra)}
local n = 0
local id = ""
function init(args)
  math.randomseed(os.time() + tonumber(string.sub(tostring({}), 10), 16) % 100000)
  id = string.format("%x", math.random(1, 2147483647))
end
function request()
  n = n + 1
  if setEvery > 0 and n % setEvery == 0 then
    local key = prefixes[(n % #prefixes) + 1] .. id .. "-" .. n
    return wrk.format("GET", "/set?key=" .. key .. "&value=" .. value .. extra)
  end
  return wrk.format("GET", gets[(n % #gets) + 1])
end
`;
}

function toMs(value: string, unit: string): number {
  const n = Number(value);
  return unit === 'us' ? n / 1000 : unit === 's' ? n * 1000 : unit === 'm' ? n * 60_000 : n;
}

async function runWrk(options: LoadOptions): Promise<LoadResult> {
  const dir = mkdtempSync(join(tmpdir(), 'kvshard-wrk-'));
  try {
    const script = join(dir, 'mix.lua');
    writeFileSync(script, wrkScript(options.mix));
    const args = ['-t2', `-c${options.connections}`, `-d${options.durationS}s`, '--latency', '--timeout', '10s', '-s', script, options.baseUrl];
    const { stdout } = await run('wrk', args, { timeout: (options.durationS + 30) * 1000, maxBuffer: 1024 * 1024 });
    return parseWrk(stdout);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function parseWrk(stdout: string): LoadResult {
  const percentile = (p: string) => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, 'm').exec(stdout);
    return m ? toMs(m[1]!, m[2]!) : NaN;
  };
  const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(stdout);
  return {
    requests: Number(/^\s*(\d+) requests in /m.exec(stdout)?.[1] ?? NaN),
    requestsPerSec: Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1] ?? NaN),
    p50Ms: percentile('50'),
    p99Ms: percentile('99'),
    non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(stdout)?.[1] ?? 0),
    errors: socketErrors ? socketErrors.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0,
  };
}

async function runAutocannon(options: LoadOptions): Promise<LoadResult> {
  const { mix } = options;
  const id = Math.floor(Math.random() * 2 ** 31).toString(16);
  let n = 0;
  const result = await autocannon({
    url: options.baseUrl,
    connections: options.connections,
    duration: options.durationS,
    pipelining: 1,
    timeout: 10,
    requests: [
      {
        setupRequest: (req) => {
          n++;
          const path =
            mix.setEvery > 0 && n % mix.setEvery === 0
              ? `/set?key=${mix.setPrefixes[n % mix.setPrefixes.length]}${id}-${n}&value=${mix.setValue}${mix.setExtra}`
              : mix.gets[n % mix.gets.length]!;
          return { ...req, method: 'GET', path };
        },
      },
    ],
  });
  return {
    requests: result.requests.total,
    requestsPerSec: result.requests.average,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
  };
}

export interface BulkOptions {
  readonly baseUrl: string;
  /** Percent-encoded key prefixes (hash tags pinning keys to the shard at baseUrl), in rotation. */
  readonly prefixes: readonly string[];
  readonly value: string;
  /** How many keys to write. */
  readonly count: number;
  readonly connections: number;
}

/** The n-th key (0-based) the bulk loader writes. */
export function bulkKey(prefixes: readonly string[], n: number): string {
  return `${prefixes[n % prefixes.length]}b-${n}`;
}

/**
 * Writes `count` new keys, `connections` requests at a time, with undici's keep-alive pool (wrk cannot
 * stop after a fixed count). Resolves with the throughput; failures are counted, not retried.
 */
export async function runBulk(options: BulkOptions): Promise<LoadResult> {
  const pool = new Pool(options.baseUrl, { connections: options.connections, pipelining: 1, headersTimeout: 10_000, bodyTimeout: 10_000 });
  const started = Date.now();
  let next = 0;
  let non2xx = 0;
  let errors = 0;
  try {
    await Promise.all(
      Array.from({ length: options.connections }, async () => {
        while (next < options.count) {
          const path = `/set?key=${bulkKey(options.prefixes, next++)}&value=${options.value}`;
          try {
            const res = await pool.request({ method: 'GET', path });
            await res.body.dump();
            if (res.statusCode !== 200) non2xx++;
          } catch {
            errors++;
          }
        }
      }),
    );
  } finally {
    await pool.close();
  }
  return { requests: options.count - errors, requestsPerSec: options.count / ((Date.now() - started) / 1000), p50Ms: NaN, p99Ms: NaN, non2xx, errors };
}
