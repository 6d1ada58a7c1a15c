// The kvshard command line without a cluster: --help for the whole command and for each command, usage
// errors as one line and exit 2, and an invalid config makes serve print every problem and exit 2
// before writing anything or binding a port.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cliPath } from '../helpers/cluster.js';

const dir = mkdtempSync(join(tmpdir(), 'kvshard-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const commands = ['get', 'set', 'del', 'status', 'verify', 'failover', 'check-config', 'serve', 'drain'];

/** Runs the CLI with no config, data dir or token from this process's environment. */
function run(...args: string[]) {
  const env = { ...process.env, KV_CONFIG: '', KV_DATA_DIR: '', KV_CLUSTER_TOKEN: '' };
  return spawnSync(process.execPath, [cliPath, ...args], { encoding: 'utf8', timeout: 20_000, env, cwd: dir });
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
});

describe('kvshard --help', () => {
  it('lists every command, the common options and the exit statuses', () => {
    const res = run('--help');
    for (const command of commands) expect(res.stdout).toContain(`kvshard ${command}`);
    for (const option of ['--endpoints LIST', '--config FILE', '-o, --output FORMAT', '--data-dir DIR']) expect(res.stdout).toContain(option);
    for (const status of ['0   ok', '1   no:', '2   usage', '3   cluster unavailable', '4   unauthorized', '5   refused']) expect(res.stdout).toContain(status);
  });

  it.each(commands)('prints the usage of %s with --help, and with help COMMAND', (command) => {
    const res = run(command, '--help');
    expect(res.status).toBe(0);
    expect(res.stdout).toMatch(new RegExp(`^Usage: kvshard ${command}\\b`));
    expect(res.stdout).toContain('Exit status: 0 ok;');
    expect(res.stderr).toBe('');
    expect(run('help', command).stdout).toBe(res.stdout);
  });
});

describe('kvshard usage errors', () => {
  it('exits 2 on unknown commands and options, missing or extra arguments, and bad option values', () => {
    for (const args of [
      [],
      ['frobnicate'],
      ['--config', 'x.toml', 'status'],
      ['serve', '--bogus'],
      ['get'],
      ['get', 'a', 'b'],
      ['del'],
      ['set', 'k'],
      ['set', 'k', 'v', '--file', '/dev/null'],
      ['get', 'k', '--config'],
      ['get', 'k', '-o', 'yaml'],
      ['get', 'k', '--read-from', 'master'],
      ['get', 'k', '--timeout', '1.5'],
      ['set', 'k', 'v', '--ack', 'all'],
      ['status', '--force'],
      ['failover'],
      ['verify', 'shard1'],
    ]) {
      const res = run(...args);
      expect(`${args.join(' ')}: ${res.status}`).toBe(`${args.join(' ')}: 2`);
      expect(res.stdout).toBe('');
      expect(res.stderr).toMatch(/^kvshard: usage: .+\n(Usage: kvshard|Run kvshard --help)/);
    }
  });

  it('exits 2 naming the problem for a bad key, a value over 16 MiB or an unreadable file, before connecting', () => {
    // Nobody listens on 127.0.0.1:9: a command that connected would exit 3, not 2.
    const noCluster = ['--endpoints', '127.0.0.1:9'];
    expect(run('get', '', ...noCluster)).toMatchObject({ status: 2, stderr: expect.stringMatching(/^kvshard: bad_request: /) });
    expect(run('del', 'k'.repeat(1025), ...noCluster)).toMatchObject({ status: 2, stderr: expect.stringContaining('at most 1024 bytes') });
    const big = join(dir, 'big.bin');
    // A sparse file: 16 MiB and one byte long without writing them.
    writeFileSync(big, '');
    truncateSync(big, 16 * 1024 * 1024 + 1);
    expect(run('set', 'k', '--file', big, ...noCluster)).toMatchObject({ status: 2, stderr: expect.stringMatching(/^kvshard: payload_too_large: /) });
    expect(run('set', 'k', '--file', join(dir, 'absent.bin'), ...noCluster)).toMatchObject({ status: 2, stderr: expect.stringContaining('cannot read') });
  });

  it('exits 2 with every problem of an invalid config, for every command that reads it', () => {
    const config = join(dir, 'two-problems.toml');
    writeFileSync(config, '[[shards]]\nname = "a"\nidx = 0\nbogus = 1\n');
    for (const command of ['check-config', 'status', 'get k', 'verify']) {
      const res = run(...command.split(' '), '--config', config);
      expect(res.status, command).toBe(2);
      expect(res.stderr.split('\n').filter((l) => l.startsWith('kvshard: invalid_config: ')).length, res.stderr).toBeGreaterThanOrEqual(3);
    }
  });
});
