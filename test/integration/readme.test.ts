// The README's commands run as written. Its curl examples run in order against a fresh three-shard
// cluster laid out like the repository's sharding.toml (127.0.0.1:8080-8085 mapped to this test's free
// ports), and each reply matches the comment beside it: the body, a header, or every complete
// "field":value the comment shows. Its `node dist/cli/cli.js` and `./launch.sh` lines run too (paths to
// this test's config and data dir), each exiting 0. Only npm's own commands are left to CI itself.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/core/config.js';
import { Cluster } from '../helpers/cluster.js';
import { waitConverged } from '../helpers/replication.js';
import { cliCommandKey, mapAddresses, repoAddresses, shellBlockLines, splitComment } from '../helpers/doc-examples.js';

const repo = resolve(import.meta.dirname, '../..');
const readme = readFileSync(resolve(repo, 'README.md'), 'utf8');
const exec = promisify(execFile);

/** The ```sh blocks of the README under the heading `heading`, as lines without blanks. */
function shellLines(heading: string): string[] {
  const start = readme.indexOf(`\n## ${heading}\n`);
  expect(start, `README section "${heading}"`).toBeGreaterThan(-1);
  const end = readme.indexOf('\n## ', start + 1);
  return shellBlockLines(readme.slice(start, end === -1 ? undefined : end));
}

let cluster: Cluster;
/** The repository config's addresses, each mapped to the test cluster member at the same place. */
let addresses: Map<string, string>;
let launchCluster: Cluster;

beforeAll(async () => {
  cluster = await Cluster.create(loadConfig(resolve(repo, 'sharding.toml')).shards.length);
  addresses = repoAddresses(repo, cluster);
  await cluster.startAll();
  launchCluster = await Cluster.create(2);
}, 120_000);
afterAll(async () => {
  await exec(resolve(repo, 'launch.sh'), ['stop'], { env: launchEnv(), timeout: 60_000 }).catch(() => undefined);
  await launchCluster?.destroy();
  await cluster?.destroy();
});

function mapped(text: string): string {
  return mapAddresses(text, addresses);
}

function launchEnv(): NodeJS.ProcessEnv {
  return { ...process.env, KV_CONFIG: launchCluster.configPath, KV_DATA_DIR: launchCluster.dataDir };
}

/** Every complete `"field": value` pair in a comment (a `...` stands for fields left out). */
function shownFields(comment: string): [string, unknown][] {
  return [...comment.matchAll(/"(\w+)":("(?:[^"\\]|\\.)*"|-?\d+|true|false|null)(?=[,}])/g)].map((m) => [m[1]!, JSON.parse(m[2]!)]);
}

/**
 * The README's `node dist/cli/cli.js` and `npx kvshard` lines to run here, and how many it has in all.
 * `npx kvshard` is this repository's bin, dist/cli/cli.js; its lines run against the test cluster's
 * config. A command docs/cli.md shows too is left to cli-docs.test.ts, which runs that document.
 */
function cliLines(): { all: number; lines: string[] } {
  const cliDoc = new Set(shellBlockLines(readFileSync(resolve(repo, 'docs/cli.md'), 'utf8')).map((l) => cliCommandKey(splitComment(l).command)));
  const all = readme.split('\n').filter((l) => l.startsWith('node dist/cli/cli.js') || l.startsWith('npx kvshard '));
  const lines = all
    .filter((l) => !cliDoc.has(cliCommandKey(splitComment(l).command)))
    .map((l) => (l.startsWith('npx kvshard ') ? `${splitComment(l).command.replace(/^npx kvshard/, 'node dist/cli/cli.js')} --config sharding.toml` : l));
  return { all: all.length, lines };
}

describe('the README', () => {
  it('curl examples answer what their comments say', async () => {
    const lines = shellLines('Using it with curl');
    expect(lines.length).toBeGreaterThan(5);
    for (const line of lines) {
      const { command, comment } = splitComment(line);
      const { stdout, stderr } = await exec('bash', ['-c', mapped(command)], { cwd: repo, timeout: 30_000, encoding: 'utf8' });
      // curl only warns about a file it cannot read, and posts an empty body.
      expect(stderr, command).not.toMatch(/curl: |Warning/);
      const expected = mapped(comment);
      const fields = shownFields(expected);
      const whole = /^(\d{3} )?(\{.*\})$/.exec(expected);
      const shownStatus = /^(\d{3}) /.exec(expected)?.[1];
      if (shownStatus !== undefined) {
        // A reply shown with its status: the same command (these change nothing) prints the status too.
        const { stdout: code } = await exec('bash', ['-c', `${mapped(command)} -o /dev/null -w '%{http_code}'`], {
          cwd: repo,
          timeout: 30_000,
          encoding: 'utf8',
        });
        expect(`${command}: ${code}`).toBe(`${command}: ${shownStatus}`);
      }
      if (whole && !whole[2]!.includes('...')) {
        // A reply shown whole shows every field the reply has.
        expect(Object.keys(JSON.parse(stdout) as object).sort(), command).toEqual(Object.keys(JSON.parse(whole[2]!) as object).sort());
      }
      if (fields.length > 0) {
        const body = JSON.parse(stdout) as Record<string, unknown>;
        for (const [name, value] of fields) expect(`${command}: ${name}=${JSON.stringify(body[name])}`).toBe(`${command}: ${name}=${JSON.stringify(value)}`);
      } else if (/^[\w-]+: \S+$/.test(expected.split('; ').at(-1)!)) {
        const header = expected.split('; ').at(-1)!;
        expect(stdout.toLowerCase(), command).toContain(header.toLowerCase());
      } else if (/^\w+$/.test(expected)) {
        expect(stdout, command).toBe(expected);
      } else {
        // A description: the command must have answered with a JSON success.
        const body = JSON.parse(stdout) as Record<string, unknown>;
        expect(body['error'], `${command}: ${stdout}`).toBeUndefined();
      }
    }
  });

  it('names only programs a fresh clone has', async () => {
    const commands = shellBlockLines(readme);
    expect(commands.length).toBeGreaterThan(10);
    for (const line of commands) {
      for (const part of splitComment(line).command.split('|')) {
        const program = part.trim().split(/\s+/)[0]!;
        const found = program.startsWith('./')
          ? existsSync(resolve(repo, program))
          : await exec('bash', ['-c', `command -v ${program}`]).then(
              () => true,
              () => false,
            );
        expect(`${program} (in: ${line})`, 'a program that exists').toBe(found ? `${program} (in: ${line})` : 'missing');
      }
    }
  });

  it('node dist/cli/cli.js and npx kvshard commands run', async () => {
    const { all, lines } = cliLines();
    expect(all).toBeGreaterThanOrEqual(6);
    expect(lines.length).toBeGreaterThanOrEqual(3);
    // verify compares replicas with their primaries: let them catch up with the curl examples first.
    for (const shard of cluster.shards) await waitConverged(cluster, shard.name);
    for (const line of lines) {
      const command = splitComment(line)
        .command.replaceAll('sharding.toml', cluster.configPath)
        .replace(/--data-dir data\b/, `--data-dir ${cluster.dataDir}`);
      const result = await exec('bash', ['-c', command], { cwd: repo, timeout: 30_000, encoding: 'utf8' });
      expect(result.stdout.length, command).toBeGreaterThan(0);
    }
  });

  it('./launch.sh commands run in order', async () => {
    const lines = shellLines('Running processes').filter((l) => l.startsWith('./launch.sh'));
    expect(lines.length).toBeGreaterThanOrEqual(5);
    for (const line of lines) {
      const { command } = splitComment(line);
      await exec('bash', ['-c', command], { cwd: repo, env: launchEnv(), timeout: 120_000, encoding: 'utf8' });
    }
  }, 300_000);
});
