// Config validation: every invalid sharding.toml is rejected with a message naming the file and the
// TOML path of the problem, before anything opens LMDB or binds a port.
import { describe, expect, it } from 'vitest';
import { ConfigError, findShard, parseConfig } from '../../src/core/config.js';

const file = 'test.toml';

function shardToml(name: string, idx: number | string, address: string, replica: string, extra = ''): string {
  return `[[shards]]\nname = "${name}"\nidx = ${idx}\naddress = "${address}"\nreplica = "${replica}"\n${extra}\n`;
}

const valid = shardToml('a', 0, '127.0.0.1:9000', '127.0.0.1:9001') + shardToml('b', 1, '127.0.0.1:9002', '127.0.0.1:9003');

function problemsOf(text: string): string[] {
  try {
    parseConfig(text, file);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return [...(err as ConfigError).problems];
  }
  throw new Error('expected the config to be rejected');
}

// biome-ignore lint/complexity/noExcessiveLinesPerFunction: a describe() suite, not a function: its tests share one setup
describe('parseConfig', () => {
  it('accepts the valid layout, ordered by idx and frozen', () => {
    const reordered = shardToml('b', 1, '127.0.0.1:9002', '127.0.0.1:9003') + shardToml('a', 0, '127.0.0.1:9000', '127.0.0.1:9001');
    const config = parseConfig(reordered, file);
    expect(config.shards.map((s) => s.name)).toEqual(['a', 'b']);
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.shards[0])).toBe(true);
    expect(config.layoutId).toBe(parseConfig(valid, file).layoutId);
    expect(findShard(config, 'b').idx).toBe(1);
  });

  it('reports TOML syntax errors with line and column', () => {
    expect(problemsOf('[[shards]]\nname = "a"\nidx = \n')).toEqual([expect.stringMatching(/^test\.toml:3:\d+: TOML syntax error/)]);
  });

  it.each([
    [
      'missing shards',
      'title = "x"\n',
      [
        'test.toml: title: unknown key (allowed: shards, token, node_timeout_ms, replication, migration, metrics, coordinator)',
        'test.toml: shards: missing: declare at least one [[shards]] table',
      ],
    ],
    ['shards not an array', 'shards = 3\n', ['test.toml: shards: must be an array of tables ([[shards]])']],
    ['empty shards', 'shards = []\n', ['test.toml: shards: is empty: declare at least one [[shards]] table']],
  ])('%s', (_name, text, expected) => {
    expect(problemsOf(text)).toEqual(expected);
  });

  it('names missing fields and wrong types', () => {
    expect(problemsOf('[[shards]]\nname = 5\nidx = "0"\n')).toEqual([
      'test.toml: shards[0].name: must be a string, got number "5"',
      'test.toml: shards[0].idx: must be an integer, got string "0"',
      'test.toml: shards[0].address: missing',
      'test.toml: shards[0].replica: missing',
    ]);
  });

  it('rejects a [replication] table with unknown keys or a log retention under 1 byte', () => {
    expect(problemsOf(`[replication]\nlog_retention_bytes = 0\nx = 1\n${valid}`)).toEqual([
      'test.toml: replication.x: unknown key (allowed: log_retention_bytes)',
      'test.toml: replication.log_retention_bytes: must be an integer of at least 1, got number "0"',
    ]);
    expect(problemsOf(`replication = 3\n${valid}`)).toEqual(['test.toml: replication: must be a table ([replication])']);
  });

  it('reads [migration] settings and rejects out-of-range ones', () => {
    expect(parseConfig(`[migration]\nbatch_keys = 50\nbatch_pause_ms = 20\n${valid}`, file).migration).toEqual({ batchKeys: 50, batchPauseMs: 20 });
    expect(parseConfig(valid, file).migration).toEqual({ batchKeys: 1000, batchPauseMs: 0 });
    expect(problemsOf(`[migration]\nbatch_keys = 0\nbatch_pause_ms = -1\nspeed = 3\n${valid}`)).toEqual([
      'test.toml: migration.speed: unknown key (allowed: batch_keys, batch_pause_ms)',
      'test.toml: migration.batch_keys: must be an integer from 1 to 10000, got number "0"',
      'test.toml: migration.batch_pause_ms: must be an integer from 0 to 60000, got number "-1"',
    ]);
  });

  it('reads [coordinator] with its defaults, and rejects endpoints, TTLs, lags and prefixes it cannot use', () => {
    expect(parseConfig(valid, file).coordinator).toBeUndefined();
    expect(parseConfig(`${valid}[coordinator]\netcd = ["127.0.0.1:2379"]\n`, file).coordinator).toEqual({
      etcd: ['127.0.0.1:2379'],
      leaseTtlMs: 5000,
      maxLagOnFailover: 100,
      prefix: '/kvshard',
    });
    const settings = '[coordinator]\netcd = ["127.0.0.1:2379", "etcd-2:2379"]\nlease_ttl_ms = 2000\nmax_lag_on_failover = 0\nprefix = "/kv/prod"\n';
    expect(parseConfig(valid + settings, file).coordinator).toMatchObject({ leaseTtlMs: 2000, maxLagOnFailover: 0, prefix: '/kv/prod' });
    expect(problemsOf(`${valid}[coordinator]\netcd = []\nlease_ttl_ms = 2500\nmax_lag_on_failover = -1\nprefix = "kv/"\nttl = 3\n`)).toEqual([
      'test.toml: coordinator.ttl: unknown key (allowed: etcd, lease_ttl_ms, max_lag_on_failover, prefix)',
      'test.toml: coordinator.etcd: must list 1 to 16 etcd client endpoints as "host:port" strings',
      'test.toml: coordinator.lease_ttl_ms: must be whole seconds from 2000 to 600000 (etcd grants leases in seconds, 2 s at least), got 2500',
      'test.toml: coordinator.max_lag_on_failover: must be an integer from 0 to 1000000000, got -1',
      'test.toml: coordinator.prefix: must start with "/", not end with one, and hold only letters, digits and _ . / -, got "kv/"',
    ]);
    expect(problemsOf(`${valid}[coordinator]\netcd = ["http://127.0.0.1:2379"]\nlease_ttl_ms = 1000\n`)).toEqual([
      'test.toml: coordinator.etcd[0]: must be "host:port", got "http://127.0.0.1:2379"',
      'test.toml: coordinator.lease_ttl_ms: must be whole seconds from 2000 to 600000 (etcd grants leases in seconds, 2 s at least), got 1000',
    ]);
  });

  it('rejects unknown keys in a shard', () => {
    expect(problemsOf(shardToml('a', 0, '127.0.0.1:9000', '127.0.0.1:9001', 'port = 3'))).toEqual([
      'test.toml: shards[0].port: unknown key (allowed: name, idx, address, replica)',
    ]);
  });

  it.each(['127.0.0.1', '127.0.0.1:0', '127.0.0.1:70000', 'http://127.0.0.1:80', ':80', 'a b:80'])('rejects address %j', (address) => {
    expect(problemsOf(shardToml('a', 0, address, '127.0.0.1:9001'))).toEqual([
      `test.toml: shards[0].address: "${address}" is not host:port with a port from 1 to 65535`,
    ]);
  });

  it('rejects bad shard names', () => {
    expect(problemsOf(shardToml('a/b', 0, '127.0.0.1:9000', '127.0.0.1:9001'))).toEqual([
      `test.toml: shards[0].name: "a/b" must be 1-64 letters, digits, '-' or '_', starting with a letter or digit`,
    ]);
  });

  it('rejects duplicate names and idx', () => {
    const text = shardToml('a', 0, '127.0.0.1:9000', '127.0.0.1:9001') + shardToml('a', 0, '127.0.0.1:9002', '127.0.0.1:9003');
    expect(problemsOf(text)).toEqual([
      'test.toml: shards[1].name: duplicate of shards[0].name ("a")',
      'test.toml: shards[1].idx: duplicate of shards[0].idx (0)',
      'test.toml: shards: idx must be exactly 0..1; missing 1',
    ]);
  });

  it('rejects idx gaps and out-of-range idx', () => {
    const text = shardToml('a', 0, '127.0.0.1:9000', '127.0.0.1:9001') + shardToml('b', 2, '127.0.0.1:9002', '127.0.0.1:9003');
    expect(problemsOf(text)).toEqual(['test.toml: shards[1].idx: 2 is out of range: with 2 shards, idx must be 0..1']);
    expect(problemsOf(shardToml('a', -1, '127.0.0.1:9000', '127.0.0.1:9001'))).toEqual([
      'test.toml: shards[0].idx: -1 is out of range: with 1 shards, idx must be 0..0',
    ]);
  });

  it('rejects an address used twice across primaries and replicas', () => {
    const text = shardToml('a', 0, '127.0.0.1:9000', '127.0.0.1:9001') + shardToml('b', 1, 'localhost:9001', '127.0.0.1:9003');
    expect(problemsOf(text)).toEqual(['test.toml: shards[1].address: duplicate of shards[0].replica ("localhost:9001")']);
    expect(problemsOf(shardToml('a', 0, '127.0.0.1:9000', '127.0.0.1:9000'))).toEqual([
      'test.toml: shards[0].replica: duplicate of shards[0].address ("127.0.0.1:9000")',
    ]);
  });

  it('reports every problem in one run: an empty token, a replica equal to its address, a bad shard beside them', () => {
    const text =
      'token = ""\n[migration]\nbatch_keys = 0\n' +
      shardToml('a', 0, '127.0.0.1:9000', '127.0.0.1:9000') +
      shardToml('b', 1, 'nowhere', '127.0.0.1:9003') +
      shardToml('a', 2, '127.0.0.1:9004', '127.0.0.1:9003');
    expect(problemsOf(text)).toEqual([
      'test.toml: token: must be a string of at least 16 characters',
      'test.toml: migration.batch_keys: must be an integer from 1 to 10000, got number "0"',
      'test.toml: shards[1].address: "nowhere" is not host:port with a port from 1 to 65535',
      'test.toml: shards[0].replica: duplicate of shards[0].address ("127.0.0.1:9000")',
      'test.toml: shards[2].name: duplicate of shards[0].name ("a")',
    ]);
  });

  it('findShard names the shards that exist', () => {
    const config = parseConfig(valid, file);
    expect(() => findShard(config, 'zzz')).toThrow('test.toml: no shard named "zzz" (shards: a, b)');
  });
});
