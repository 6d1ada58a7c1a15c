// What a hostile or broken client can do to one node, and the bound that stops it: a body that stops
// arriving, headers sent a byte at a time, pipelined GETs of a large value whose answers are never read,
// a flood of malformed requests, and request lines node's parser lets through (HTTP/2.0, CONNECT,
// absolute-form targets, paths in other case). The node answers in JSON, holds a bounded amount of
// memory, keeps its log bounded and keeps serving everyone else.
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { dataPath, request, useCluster, waitFor } from '../helpers/cluster.js';
import { parseResponses, rawConversation, rawExchange, rawRequest, type RawResponse, target } from '../helpers/raw-http.js';
import { status } from '../helpers/replication.js';

const cluster = useCluster(1);
const mib = 1024 * 1024;
const address = () => cluster().address('shard1');

/** A connection the test writes to piece by piece; `answers` resolves when the server closes it. */
function openConnection(options: { allowHalfOpen?: boolean } = {}): { socket: net.Socket; received: () => Buffer; closed: Promise<void> } {
  const socket = net.connect({ ...target(address()), ...options });
  let data = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    data = Buffer.concat([data, chunk]);
  });
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  return { socket, received: () => data, closed };
}

async function requestsStatus(): Promise<Record<string, number>> {
  return (await status(cluster(), 'shard1', 'primary'))['requests'];
}

describe.concurrent('slow clients', () => {
  it('a body that stops arriving is answered 408 and gives back its bytes', async () => {
    const conn = openConnection();
    conn.socket.write(`POST /set?key=stalled HTTP/1.1\r\nHost: x\r\nContent-Length: ${mib}\r\n\r\n`);
    conn.socket.write(Buffer.alloc(64 * 1024, 'a'));
    await waitFor('the stalled body counted in flight', async () => (await requestsStatus())['body_bytes_in_flight']! >= 64 * 1024);
    // The bound is 20 s; the wait allows for a loaded machine, and a node that never answers fails it.
    await Promise.race([conn.closed, new Promise((_, reject) => setTimeout(() => reject(new Error('no answer to a stalled body within 45 s')), 45_000))]);
    const [answer] = parseResponses(conn.received()).responses;
    expect(answer?.status).toBe(408);
    expect(answer?.json().error).toBe('request_timeout');
    expect((await requestsStatus())['body_bytes_in_flight']).toBe(0);
    expect((await request(cluster().url('shard1', 'primary', dataPath('get', 'stalled')))).status).toBe(404);
  });

  it('headers sent a byte at a time are cut off by the headers bound (10 s)', async () => {
    const conn = openConnection();
    const head = `GET ${dataPath('get', 'slow')} HTTP/1.1\r\nHost: x\r\nX-Pad: ${'p'.repeat(200)}\r\n\r\n`;
    const started = Date.now();
    let i = 0;
    const trickle = setInterval(() => {
      if (i < head.length && !conn.socket.destroyed) conn.socket.write(head[i++]!);
    }, 200);
    try {
      await Promise.race([conn.closed, new Promise((_, reject) => setTimeout(() => reject(new Error('headers still trickling after 30 s')), 30_000))]);
    } finally {
      clearInterval(trickle);
    }
    expect(i).toBeLessThan(head.length);
    // The node answers before it closes: a 408 in JSON, not a silent close.
    const [answer] = parseResponses(conn.received()).responses;
    expect(answer?.status).toBe(408);
    expect(answer?.json().error).toBe('request_timeout');
    expect(Date.now() - started).toBeGreaterThanOrEqual(9_000);
  });
});

describe('answers a client does not read', () => {
  it('pipelined GETs of a large value: past 1 MiB unread the connection gets 503 and closes', async () => {
    const value = Buffer.alloc(mib / 2, 'v');
    expect((await request(cluster().url('shard1', 'primary', dataPath('set', 'big')), { method: 'POST', body: value })).status).toBe(200);
    const count = 64;
    const conn = openConnection();
    conn.socket.pause();
    conn.socket.write(rawRequest('GET', dataPath('get', 'big')).repeat(count));
    // Nothing is read while the node answers: its queued answers for this connection stay bounded.
    await waitFor('the node to refuse the unread connection', async () => (await requestsStatus())['refused_unread']! > 0 || undefined);
    const peak = (await requestsStatus())['reply_bytes_unsent_peak']!;
    expect(peak).toBeLessThanOrEqual(128 * mib);
    // Another client is served meanwhile.
    expect((await request(cluster().url('shard1', 'primary', dataPath('get', 'big')))).status).toBe(200);
    conn.socket.resume();
    await conn.closed;
    const { responses } = parseResponses(conn.received());
    const refused = responses.filter((r: RawResponse) => r.status === 503);
    expect(refused).toHaveLength(1);
    expect(refused[0]!.json().error).toBe('overloaded');
    expect(responses.at(-1)!.status).toBe(503);
    expect(responses.length).toBeLessThan(count);
    for (const ok of responses.slice(0, -1)) expect(ok.body.equals(value)).toBe(true);
  });

  it('many connections that read nothing share one budget for large answers', async () => {
    // Larger than what the kernel buffers for a connection that reads nothing, so no answer completes.
    const value = Buffer.alloc(8 * mib, 'w');
    expect((await request(cluster().url('shard1', 'primary', dataPath('set', 'bigger')), { method: 'POST', body: value })).status).toBe(200);
    const conns = Array.from({ length: 24 }, () => openConnection());
    for (const c of conns) {
      c.socket.pause();
      c.socket.write(rawRequest('GET', dataPath('get', 'bigger')));
    }
    const refusedBefore = (await requestsStatus())['refused_replies'] ?? 0;
    // 24 x 8 MiB is 192 MiB, past the 128 MiB budget: some answers must be refused.
    await waitFor('large answers refused for the budget', async () => (await requestsStatus())['refused_replies']! > refusedBefore || undefined);
    const s = await requestsStatus();
    expect(s['reply_bytes_unsent_peak']).toBeLessThanOrEqual(s['reply_bytes_max']!);
    for (const c of conns) c.socket.destroy();
    await waitFor('the budget given back', async () => (await requestsStatus())['reply_bytes_unsent'] === 0 || undefined);
  });
});

describe('request lines node lets through', () => {
  it('HTTP/2.0 in a request line gets 505 in JSON', async () => {
    const { responses } = await rawExchange(address(), `GET ${dataPath('get', 'a')} HTTP/2.0\r\nHost: x\r\n\r\n`);
    expect(responses[0]?.status).toBe(505);
    expect(responses[0]?.json().error).toBe('http_version_not_supported');
  });

  it('CONNECT gets 405 in JSON instead of a dropped connection', async () => {
    const { responses } = await rawExchange(address(), 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n');
    expect(responses[0]?.status).toBe(405);
    expect(responses[0]?.json().error).toBe('method_not_allowed');
  });

  it('an absolute-form target is served like its path', async () => {
    await request(cluster().url('shard1', 'primary', dataPath('set', 'abs', 'olute')));
    const { responses } = await rawExchange(address(), `GET http://${address()}${dataPath('get', 'abs')} HTTP/1.1\r\nHost: ${address()}\r\n\r\n`, {
      responses: 1,
    });
    expect(responses[0]?.status).toBe(200);
    expect(responses[0]?.text()).toBe('olute');
    const health = await rawExchange(address(), `GET http://${address()}/health HTTP/1.1\r\nHost: ${address()}\r\n\r\n`, { responses: 1 });
    expect(health.responses[0]?.status).toBe(200);
  });

  it('paths are case-sensitive on every route', async () => {
    for (const path of ['/STATUS', '/Health', dataPath('GET', 'abs')]) {
      const res = await request(cluster().url('shard1', 'primary', path));
      expect(res.status, path).toBe(404);
      expect(res.json().error).toBe('unknown_route');
    }
  });
});

describe('requests the parser refuses on a kept-alive connection', () => {
  // Each is answered in JSON on a fresh connection; on one that already served a request it must get the
  // same answer (not a silent close), then the connection closes.
  const refused: [string, string, number, string][] = [
    ['a request line over the head bound', `GET /get?key=a&pad=${'x'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`, 431, 'headers_too_large'],
    ['a malformed header', 'GET /get?key=a HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n', 400, 'bad_request'],
    ['an unknown method', 'FROB /get?key=a HTTP/1.1\r\nHost: x\r\n\r\n', 501, 'not_implemented'],
    ['an unparsable version', 'GET /get?key=a HTTP/1.A\r\nHost: x\r\n\r\n', 505, 'http_version_not_supported'],
  ];

  it.each(refused)('%s gets the same JSON answer as on a fresh connection', async (_name, payload, status, code) => {
    const fresh = await rawExchange(address(), payload);
    expect(fresh.responses.map((r) => r.status)).toEqual([status]);
    // Resolves once the node has closed the connection, within the helper's timeout.
    const responses = await rawConversation(address(), [rawRequest('GET', dataPath('get', 'zz')), payload]);
    expect(responses.map((r) => r.status)).toEqual([404, status]);
    expect(responses[1]!.json().error).toBe(code);
    expect(responses[1]!.headers['connection']).toBe('close');
  });
});

describe('parser errors that must not be answered', () => {
  it('a bad chunk in the body of a request already answered gets no second answer', async () => {
    // An unknown route is answered before its body is read; the body's bad chunk is not a new request,
    // so an answer to it would be taken for the answer to the next request the client sent.
    const conn = openConnection();
    conn.socket.write('POST /nope HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n');
    await waitFor('the answer to the request', () => parseResponses(conn.received()).responses.length === 1);
    conn.socket.write('zz\r\n');
    await conn.closed;
    expect(parseResponses(conn.received()).responses.map((r) => r.status)).toEqual([404]);
  });

  it('a CONNECT answered 405 and then reset by the client leaves the node serving', async () => {
    for (let i = 0; i < 3; i++) {
      // Half-open: our side stays open after the node's FIN, so that the reset reaches an open socket.
      const conn = openConnection({ allowHalfOpen: true });
      conn.socket.write('CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n');
      await waitFor('the 405', () => parseResponses(conn.received()).responses[0]?.status === 405);
      // A reset, as when a client closes with bytes unread: the node must not take it as fatal.
      conn.socket.resetAndDestroy();
      await conn.closed;
      expect((await request(cluster().url('shard1', 'primary', '/health'))).status).toBe(200);
    }
    expect(() => process.kill(cluster().pid('shard1', 'primary'), 0)).not.toThrow();
  });
});

describe('a flood of malformed requests', () => {
  it('is logged at most 20 lines a second, with a count of the rest', async () => {
    const from = cluster().output('shard1', 'primary').length;
    await Promise.all(Array.from({ length: 200 }, () => rawExchange(address(), 'GET /get?key=a HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n')));
    const log = await waitFor('the count of lines not logged', () => {
      const added = cluster().output('shard1', 'primary').slice(from);
      return /more client-fault lines in the last second were not logged/.test(added) && added;
    });
    const faultLines = log.split('\n').filter((line) => line.includes('client fault'));
    expect(faultLines.length).toBeLessThan(200);
    expect((await request(cluster().url('shard1', 'primary', '/health'))).status).toBe(200);
  });
});
