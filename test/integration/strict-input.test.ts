// What a client sends is taken strictly and every answer is JSON: a data route accepts only its
// documented parameters, the cluster's internal headers count only on requests that carry the cluster
// token, requests that node's HTTP parser refuses (oversized URL or headers, raw non-ASCII, no Host,
// an unknown method) get JSON errors with stable codes, and HEAD works on the read routes. Nothing a
// refused request names is stored, and no error body echoes a client's header or a server path.
import { beforeAll, describe, expect, it } from 'vitest';
import { dataPath, keyOwnedBy, request, testToken, useCluster } from '../helpers/cluster.js';
import { rawExchange, rawRequest } from '../helpers/raw-http.js';

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

async function expectAbsent(key: string) {
  expect((await request(base + dataPath('get', key))).status).toBe(404);
}

describe('unknown parameters', () => {
  it.each([
    ['/set?key=strict1&value=v&ttl=1&nx=1', 'ttl', 'strict1'],
    ['/set?key=strict2&value=v&ak=replica', 'ak', 'strict2'],
    ['/get?key=strict3&value=v', 'value', 'strict3'],
    ['/delete?key=strict4&value=v', 'value', 'strict4'],
    ['/set?key=strict5&value=v&Key=x', 'Key', 'strict5'],
  ])('%s is a 400 naming the parameter', async (path, name, key) => {
    const body = await expectError(path, 400, 'bad_request');
    expect(body.message).toContain(`unknown parameter ${JSON.stringify(name)}`);
    expect(body.parameter).toBe(name);
    await expectAbsent(key);
  });

  it('names a long or odd parameter JSON-escaped and cut to 64 characters', async () => {
    const name = `"q\n${'x'.repeat(100)}`;
    const body = await expectError(`/set?key=strict6&value=v&${encodeURIComponent(name)}=1`, 400, 'bad_request');
    expect(body.message).toContain(`unknown parameter ${JSON.stringify(name.slice(0, 64))}`);
    expect(body.message).not.toContain('x'.repeat(65));
    await expectAbsent('strict6');
  });

  it('still takes every documented parameter', async () => {
    expect((await request(base + dataPath('set', 'strict-ok', 'v', '&ack=primary'))).status).toBe(200);
    expect((await request(base + dataPath('delete', 'strict-ok', undefined, '&ack=replica'))).status).toBe(200);
  });
});

describe('internal headers', () => {
  const shard2Key = () => keyOwnedBy('shard2', 2, 'internal-');

  it('are a 400 from a client without the cluster() token, and change nothing', async () => {
    const key = shard2Key();
    expect((await request(`http://${cluster().address('shard2')}${dataPath('set', key, 'held')}`)).status).toBe(200);
    for (const [name, value] of [
      ['X-Kv-Forwarded-By', '<script>alert(1)</script>'],
      ['X-Kv-Layout', 'evil-layout-value'],
      ['X-Kv-Previous-Owner-Read', '1'],
    ] as const) {
      const res = await request(base + dataPath('get', key), { headers: { [name]: value } });
      expect(res.status).toBe(400);
      const body = res.json();
      expect(body.error).toBe('bad_request');
      expect(res.text()).not.toContain(value === '1' ? 'Previous-Owner-Read: 1' : value);
      // With the wrong token they count as little.
      const wrong = await request(base + dataPath('get', key), { headers: { [name]: value, 'X-Kv-Token': 'not-the-token-at-all' } });
      expect(wrong.status).toBe(400);
    }
    // Without the marks the read is forwarded to the owner as usual.
    const plain = await request(base + dataPath('get', key));
    expect(plain.status).toBe(200);
    expect(plain.text()).toBe('held');
  });

  it('count with the token, and a refusal names neither header values nor server paths', async () => {
    const key = shard2Key();
    const res = await request(base + dataPath('get', key), {
      headers: { 'X-Kv-Token': testToken, 'X-Kv-Forwarded-By': 'shard2/primary', 'X-Kv-Layout': '0123456789ab' },
    });
    expect(res.status).toBe(421);
    expect(res.json().error).toBe('wrong_shard');
    expect(res.text()).not.toContain(cluster().dir);
    const odd = await request(base + dataPath('get', key), {
      headers: { 'X-Kv-Token': testToken, 'X-Kv-Forwarded-By': 'not a node name "quoted"', 'X-Kv-Layout': 'zz' },
    });
    expect(odd.status).toBe(400);
    expect(odd.text()).not.toContain('quoted');
  });
});

describe('requests the HTTP parser refuses', () => {
  const address = () => cluster().address('shard1');

  async function single(payload: Buffer | string) {
    const { responses } = await rawExchange(address(), payload, { responses: 1 });
    expect(responses).toHaveLength(1);
    const res = responses[0]!;
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    return { status: res.status, body: res.json() };
  }

  it('answers a URL over 16 KB with 431 JSON', async () => {
    const { status, body } = await single(rawRequest('GET', `/get?key=${'a'.repeat(17 * 1024)}`));
    expect(status).toBe(431);
    expect(body.error).toBe('headers_too_large');
  });

  it('answers headers over 16 KB with 431 JSON', async () => {
    const { status, body } = await single(rawRequest('GET', '/get?key=a', { 'X-Filler': 'f'.repeat(17 * 1024) }));
    expect(status).toBe(431);
    expect(body.error).toBe('headers_too_large');
  });

  it('answers raw non-ASCII in the URL with 400 JSON', async () => {
    const { status, body } = await single(
      Buffer.concat([Buffer.from('GET /get?key='), Buffer.from([0xc3, 0xa9]), Buffer.from(' HTTP/1.1\r\nHost: x\r\n\r\n')]),
    );
    expect(status).toBe(400);
    expect(body.error).toBe('bad_request');
  });

  it('answers an HTTP/1.1 request without Host with 400 JSON', async () => {
    const { status, body } = await single('GET /get?key=a HTTP/1.1\r\n\r\n');
    expect(status).toBe(400);
    expect(body.error).toBe('bad_request');
    expect(body.message).toMatch(/Host/);
  });

  it('answers an unknown method with 501 JSON', async () => {
    const { status, body } = await single('FROB /get?key=a HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(status).toBe(501);
    expect(body.error).toBe('not_implemented');
  });
});

describe('HEAD', () => {
  it('works on /get, /health and /status with the GET answer minus its body', async () => {
    const key = keyOwnedBy('shard1', 2, 'head-');
    const remote = keyOwnedBy('shard2', 2, 'head-remote-');
    expect((await request(base + dataPath('set', key, 'twelve bytes'))).status).toBe(200);
    expect((await request(base + dataPath('set', remote, 'seven b'))).status).toBe(200);
    const paths = [dataPath('get', key), dataPath('get', remote), dataPath('get', 'head-missing'), '/health', '/status'];
    const payload = paths.map((path) => rawRequest('HEAD', path)).join('');
    const { responses } = await rawExchange(cluster().address('shard1'), payload, { responses: paths.length, bodiless: paths.map(() => true) });
    expect(responses.map((r) => r.status)).toEqual([200, 200, 404, 200, 200]);
    expect(responses[0]!.headers['content-length']).toBe('12');
    expect(responses[1]!.headers['content-length']).toBe('7');
    expect(responses[1]!.headers['x-kv-shard']).toBe('shard2');
    for (const res of responses) expect(res.body.length).toBe(0);
  });

  it('is refused on the write routes, which keep their data', async () => {
    const key = keyOwnedBy('shard1', 2, 'head-write-');
    for (const path of [dataPath('set', key, 'x'), dataPath('delete', key)]) {
      const res = await request(base + path, { method: 'HEAD' });
      expect(res.status).toBe(405);
      expect(res.headers.get('allow')).toBe('GET, POST');
    }
    await expectAbsent(key);
  });
});
