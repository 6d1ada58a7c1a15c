// kvshard get, set and del against a running two-shard cluster: a value set is read back byte for byte
// (all 256 byte values, through stdin, a file and stdout), each command answers in table and JSON form,
// and the exit status says what happened: 0 done, 1 the key is absent, 3 nobody answers.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli, type CliOptions } from '../helpers/cli.js';
import { freePort, ownerOf, useCluster } from '../helpers/cluster.js';

const cluster = useCluster(2);
const dir = mkdtempSync(join(tmpdir(), 'kvshard-cli-data-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The CLI with the cluster's config, as KV_CONFIG gives it. */
function kvshard(args: string[], options: CliOptions = {}) {
  return runCli(args, { ...options, env: { KV_CONFIG: cluster().configPath, ...options.env } });
}

const allBytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

describe('kvshard get, set and del', () => {
  it('sets, gets and deletes a key, with one line per write and the bare value on stdout', async () => {
    const set = await kvshard(['set', 'greeting', 'hello world']);
    expect(set.code, set.stderr).toBe(0);
    expect(set.stdout.toString()).toMatch(new RegExp(`^shard=${ownerOf('greeting', 2)} slot=\\d+ seq=\\d+ epoch=1 ack=primary bytes=11\\n$`));

    const get = await kvshard(['get', 'greeting']);
    expect(get).toMatchObject({ code: 0, stderr: '' });
    // No newline added: the bytes as stored.
    expect(get.stdout.toString()).toBe('hello world');

    const del = await kvshard(['del', 'greeting']);
    expect(del.code, del.stderr).toBe(0);
    expect(del.stdout.toString()).toMatch(/^shard=shard\d slot=\d+ seq=\d+ epoch=1 ack=primary deleted=yes\n$/);
  });

  it('exits 1 for a key that is absent, on get and on del', async () => {
    const get = await kvshard(['get', 'never-set']);
    expect(get.code).toBe(1);
    expect(get.stdout.length).toBe(0);
    expect(get.stderr).toBe('kvshard: not_found: no key "never-set"\n');

    const del = await kvshard(['del', 'never-set']);
    expect(del.code).toBe(1);
    expect(del.stdout.toString()).toMatch(/ deleted=no\n$/);

    const json = await kvshard(['del', 'never-set', '-o', 'json']);
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout.toString())).toMatchObject({ key: 'never-set', shard: ownerOf('never-set', 2), deleted: false });
  });
});

describe('kvshard get, set and del output', () => {
  it('answers one JSON object per command with -o json', async () => {
    const set = await kvshard(['set', 'j', 'ünïcode', '-o', 'json']);
    expect(set.code, set.stderr).toBe(0);
    expect(JSON.parse(set.stdout.toString())).toEqual({
      key: 'j',
      shard: ownerOf('j', 2),
      slot: expect.any(Number),
      seq: expect.any(Number),
      epoch: 1,
      ack: 'primary',
      bytes: Buffer.byteLength('ünïcode'),
    });
    const get = await kvshard(['get', 'j', '--output', 'json']);
    expect(JSON.parse(get.stdout.toString())).toEqual({ key: 'j', value: 'ünïcode', encoding: 'utf8' });
    const del = await kvshard(['del', 'j', '-o', 'json']);
    expect(JSON.parse(del.stdout.toString())).toMatchObject({ key: 'j', deleted: true });
  });

  it('round-trips all 256 byte values through stdin and stdout, and through a file', async () => {
    const fromStdin = await kvshard(['set', 'bytes-stdin', '-'], { input: allBytes });
    expect(fromStdin.code, fromStdin.stderr).toBe(0);
    expect(fromStdin.stdout.toString()).toContain(' bytes=256\n');
    expect((await kvshard(['get', 'bytes-stdin'])).stdout.equals(allBytes)).toBe(true);

    const file = join(dir, 'reversed.bin');
    const reversed = Buffer.from(allBytes).reverse();
    writeFileSync(file, reversed);
    // ack=replica: answered once the replica has it too, so a read from the replica sees it.
    expect((await kvshard(['set', 'bytes-file', '--file', file, '--ack', 'replica'])).stdout.toString()).toContain(' ack=replica bytes=256\n');
    const fromReplica = await kvshard(['get', 'bytes-file', '--read-from', 'replica']);
    expect(fromReplica.code, fromReplica.stderr).toBe(0);
    expect(fromReplica.stdout.equals(reversed)).toBe(true);

    // Not UTF-8: JSON carries it as base64 and says so.
    const json = JSON.parse((await kvshard(['get', 'bytes-stdin', '-o', 'json'])).stdout.toString());
    expect(json).toEqual({ key: 'bytes-stdin', value: allBytes.toString('base64'), encoding: 'base64' });
  });

  it('stores an empty value, and a value that starts with - after --', async () => {
    expect((await kvshard(['set', 'empty', '-'])).code).toBe(0);
    const empty = await kvshard(['get', 'empty']);
    expect(empty).toMatchObject({ code: 0, stderr: '' });
    expect(empty.stdout.length).toBe(0);
    expect((await kvshard(['set', 'negative', '--', '-1'])).code).toBe(0);
    expect((await kvshard(['get', 'negative'])).stdout.toString()).toBe('-1');
  });
});

describe('kvshard get, set and del endpoints', () => {
  it('takes any node as --endpoints and routes each key to its shard from the cluster map', async () => {
    const endpoint = cluster().address('shard2', 'replica');
    for (const key of ['e1', 'e2', 'e3', 'e4']) {
      const set = await kvshard(['set', key, `v-${key}`, '--endpoints', endpoint, '-o', 'json']);
      expect(set.code, set.stderr).toBe(0);
      expect(JSON.parse(set.stdout.toString())['shard']).toBe(ownerOf(key, 2));
      expect((await kvshard(['get', key, '--endpoints', endpoint])).stdout.toString()).toBe(`v-${key}`);
    }
  });

  it('exits 3 when no endpoint accepts a connection, naming the code on stderr', async () => {
    const nobody = `127.0.0.1:${await freePort()}`;
    for (const args of [
      ['get', 'k'],
      ['set', 'k', 'v'],
      ['del', 'k'],
    ]) {
      const res = await kvshard([...args, '--endpoints', nobody, '--timeout', '1000']);
      expect(res.code, res.stderr).toBe(3);
      expect(res.stdout.length).toBe(0);
      expect(res.stderr).toMatch(/^kvshard: (unavailable|timeout): .+\n$/);
    }
  });
});
