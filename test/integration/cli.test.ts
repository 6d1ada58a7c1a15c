// The kvshard command: --help, and an invalid config makes serve print every problem and exit 2 before
// writing anything or binding a port.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cliPath } from '../helpers/cluster.js';

const dir = mkdtempSync(join(tmpdir(), 'kvshard-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function run(...args: string[]) {
  return spawnSync(process.execPath, [cliPath, ...args], { encoding: 'utf8', timeout: 20_000 });
}

describe('kvshard cli', () => {
  it('prints usage with --help', () => {
    const res = run('--help');
    expect(res.status).toBe(0);
    expect(res.stdout).toContain('kvshard serve --config FILE --shard NAME [--replica]');
  });

  it.each([
    ['syntax', '[[shards]\nname = "a"\n', /bad\.toml:1:\d+: TOML syntax error/],
    [
      'duplicate address',
      '[[shards]]\nname = "a"\nidx = 0\naddress = "127.0.0.1:9"\nreplica = "127.0.0.1:9"\n',
      /bad\.toml: shards\[0\]\.replica: duplicate of shards\[0\]\.address/,
    ],
    ['missing field', '[[shards]]\nname = "a"\nidx = 0\n', /bad\.toml: shards\[0\]\.address: missing/],
  ])('exits 2 on an invalid config (%s) and writes nothing', (_name, text, message) => {
    const config = join(dir, 'bad.toml');
    writeFileSync(config, text);
    const dataDir = join(dir, 'data');
    const res = run('serve', '--config', config, '--shard', 'a', '--data-dir', dataDir);
    expect(res.status).toBe(2);
    expect(res.stderr).toMatch(message);
    expect(existsSync(dataDir)).toBe(false);
  });

  it('exits 2 for an unknown shard or a missing config file', () => {
    const config = join(dir, 'good.toml');
    writeFileSync(config, '[[shards]]\nname = "a"\nidx = 0\naddress = "127.0.0.1:9"\nreplica = "127.0.0.1:10"\n');
    const unknown = run('serve', '--config', config, '--shard', 'zzz', '--data-dir', join(dir, 'data'));
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toContain('no shard named "zzz" (shards: a)');
    const missing = run('serve', '--config', join(dir, 'nope.toml'), '--shard', 'a');
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(/nope\.toml: cannot read/);
    expect(existsSync(join(dir, 'data'))).toBe(false);
  });

  it('exits 2 on unknown commands and options', () => {
    expect(run('frobnicate').status).toBe(2);
    expect(run('serve', '--bogus').status).toBe(2);
  });
});
