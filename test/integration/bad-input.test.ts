// Bad requests get a clear JSON error with the right status and change nothing: missing, empty and
// oversized keys, bad percent-encoding, oversized values, unknown paths and wrong methods.
import { beforeAll, describe, expect, it } from 'vitest';
import { dataPath, request, useCluster } from '../helpers/cluster.js';

const cluster = useCluster(2);
let base: string;
beforeAll(async () => {
  base = `http://${cluster().address('shard1')}`;
});

async function expectError(path: string, status: number, error: string, init?: RequestInit) {
  const res = await request(base + path, init);
  expect(res.status).toBe(status);
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  const body = res.json();
  expect(body.error).toBe(error);
  expect(typeof body.message).toBe('string');
  return body;
}

describe('bad input', () => {
  it.each([
    ['/get', 'missing parameter: key'],
    ['/get?key=', 'parameter key is empty; a key is 1 to 1024 bytes'],
    ['/get?value=1', 'unknown parameter "value" for /get; allowed: key'],
    ['/set?key=a', 'missing parameter: value (or POST the value as the body)'],
    ['/delete?key', 'parameter key is empty; a key is 1 to 1024 bytes'],
    ['/get?key=%E0%A4%A', 'parameter key: bad percent-encoding or invalid UTF-8'],
    ['/get?key=%FF', 'parameter key: bad percent-encoding or invalid UTF-8'],
    ['/set?key=a&value=%ZZ', 'parameter value: bad percent-encoding or invalid UTF-8'],
    ['/get?key=a&key=b', 'parameter key is given more than once'],
  ])('%s is a 400', async (path, message) => {
    const body = await expectError(path, 400, 'bad_request');
    expect(body.message).toBe(message);
  });

  it('accepts a 1024-byte key and rejects a 1025-byte one, counting UTF-8 bytes', async () => {
    const ok = 'k'.repeat(1024);
    expect((await request(base + dataPath('set', ok, 'v'))).status).toBe(200);
    expect((await request(base + dataPath('get', ok))).text()).toBe('v');
    const body = await expectError(dataPath('set', 'k'.repeat(1025), 'v'), 400, 'bad_request');
    expect(body.message).toBe('key is 1025 bytes; a key is at most 1024 bytes');
    // 342 three-byte characters are 1026 bytes although only 342 characters.
    await expectError(dataPath('get', '€'.repeat(342)), 400, 'bad_request');
  });

  it('rejects a value given both as a parameter and as a body', async () => {
    await expectError('/set?key=a&value=1', 400, 'bad_request', { method: 'POST', body: 'two' });
    expect((await request(base + dataPath('get', 'a'))).status).toBe(404);
  });

  it('rejects a body over 16 MiB with 413 and stores nothing', async () => {
    const big = Buffer.alloc(16 * 1024 * 1024 + 1, 0x61);
    await expectError('/set?key=big', 413, 'payload_too_large', { method: 'POST', body: big });
    expect((await request(base + dataPath('get', 'big'))).status).toBe(404);
    const exact = Buffer.alloc(16 * 1024 * 1024, 0x62);
    expect((await request(`${base}/set?key=big`, { method: 'POST', body: exact })).status).toBe(200);
    expect((await request(base + dataPath('get', 'big'))).body.equals(exact)).toBe(true);
  });

  it('rejects a chunked body (no Content-Length) that grows past 16 MiB with 413', async () => {
    const chunk = new Uint8Array(1024 * 1024).fill(0x63);
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent++ < 17) controller.enqueue(chunk);
        else controller.close();
      },
    });
    await expectError('/set?key=chunked', 413, 'payload_too_large', { method: 'POST', body, duplex: 'half' } as RequestInit);
    expect((await request(base + dataPath('get', 'chunked'))).status).toBe(404);
  });

  it('answers unknown paths with 404 JSON and wrong methods with 405 and Allow', async () => {
    await expectError('/nope', 404, 'unknown_route');
    await expectError('/', 404, 'unknown_route');
    const body = await expectError('/get?key=a', 405, 'method_not_allowed', { method: 'POST' });
    expect(body.message).toBe('POST is not allowed on /get; use GET or HEAD');
    const res = await request(`${base}/set?key=a&value=b`, { method: 'PUT' });
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('GET, POST');
    await expectError('/health', 405, 'method_not_allowed', { method: 'DELETE' });
  });
});
