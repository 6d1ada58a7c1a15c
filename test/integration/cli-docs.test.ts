// docs/cli.md runs as written. After ./launch.sh has started a three-shard cluster laid out like the
// repository's sharding.toml (KV_CONFIG and KV_DATA_DIR point at this test's config and data dir, and
// 127.0.0.1:8080-8085 in the examples map to its ports), every line of the document's sh blocks runs in
// order from the repository's directory, the first `npx kvshard` line through npx and the rest through
// the bin it names (node dist/cli/cli.js). Each exits with the status its comment
// names (`exit N`), else 0, and prints what the comment shows: a line of name=value pairs, the fields of
// a JSON answer, or the start of an error line on stderr.
import { execFile } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/core/config.js';
import { Cluster } from '../helpers/cluster.js';
import { waitConverged } from '../helpers/replication.js';
import { mapAddresses, repoAddresses, shellBlockLines, splitComment } from '../helpers/doc-examples.js';

const repo = resolve(import.meta.dirname, '../..');
const doc = readFileSync(resolve(repo, 'docs/cli.md'), 'utf8');
const exec = promisify(execFile);
const launch = resolve(repo, 'launch.sh');

let cluster: Cluster;
/** The repository config's addresses, each mapped to this test's member at the same place. */
let addresses: Map<string, string>;

function env(): NodeJS.ProcessEnv {
  return { ...process.env, KV_CONFIG: cluster.configPath, KV_DATA_DIR: cluster.dataDir, KV_CLUSTER_TOKEN: '' };
}

beforeAll(async () => {
  cluster = await Cluster.create(loadConfig(resolve(repo, 'sharding.toml')).shards.length);
  addresses = repoAddresses(repo, cluster);
  await exec(launch, ['start'], { cwd: repo, env: env(), timeout: 120_000 });
}, 180_000);
afterAll(async () => {
  await exec(launch, ['stop'], { cwd: repo, env: env(), timeout: 60_000 }).catch(() => undefined);
  await cluster?.destroy();
  rmSync('/tmp/noise.bin', { force: true });
});

function mapped(text: string): string {
  return mapAddresses(text, addresses);
}

/** Every line of the document's sh blocks, split into its command and the comment after `  # `. */
function examples(): { command: string; comment: string }[] {
  return shellBlockLines(doc).map(splitComment);
}

/** Every complete `"field":value` pair a comment shows (a `...` stands for fields left out). */
function shownFields(comment: string): [string, unknown][] {
  return [...comment.matchAll(/"(\w+)":("(?:[^"\\<]|\\.)*"|-?\d+|true|false|null)(?=[,}])/g)].map((m) => [m[1]!, JSON.parse(m[2]!)]);
}

/** Checks what a command printed against what its comment shows. */
function expectShown(command: string, comment: string, stdout: string, stderr: string): void {
  const shown = mapped(comment.replace(/;?\s*exit \d+.*$/, ''));
  if (shown.startsWith('shard=')) expect(`${command}: ${stdout}`).toBe(`${command}: ${shown}\n`);
  if (shown.startsWith('{')) {
    const answer = JSON.parse(stdout) as Record<string, unknown>;
    for (const [name, value] of shownFields(shown))
      expect(`${command}: ${name}=${JSON.stringify(answer[name])}`).toBe(`${command}: ${name}=${JSON.stringify(value)}`);
  }
  if (shown.startsWith('stderr: ')) expect(stderr, command).toContain(shown.slice('stderr: '.length).split(/ \(?\.\.\./)[0]!);
}

describe('docs/cli.md', () => {
  it('runs every example in order, each with the exit status and output its comment shows', async () => {
    const lines = examples();
    expect(lines.filter((l) => l.command.includes('npx kvshard')).length).toBeGreaterThan(20);
    let npxRuns = 0;
    for (const { command: written, comment } of lines) {
      // The first npx line runs as written, proving that npx finds the package's bin; the others run
      // that bin, dist/cli/cli.js, directly (npx costs most of a second per call to find it again).
      const command = written.includes('npx kvshard') && npxRuns++ > 0 ? written.replaceAll('npx kvshard', 'node dist/cli/cli.js') : written;
      // verify compares each replica with its primary: let them catch up with the writes before it.
      if (/kvshard verify/.test(written)) for (const shard of cluster.shards) await waitConverged(cluster, shard.name);
      const expected = Number(/\bexit (\d+)/.exec(comment)?.[1] ?? 0);
      const result = await exec('bash', ['-c', mapped(command)], { cwd: repo, env: env(), timeout: 60_000, encoding: 'utf8' }).then(
        (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
        (err: { code?: number; stdout: string; stderr: string }) => ({ code: err.code ?? -1, stdout: err.stdout, stderr: err.stderr }),
      );
      expect(result.code, `${command}: ${result.stderr}`).toBe(expected);
      expectShown(command, comment, result.stdout, result.stderr);
    }
  }, 600_000);
});
