// The non-data routes are served by express's Router with handlers that use node's own request and
// response methods. An express() app would swap the prototype of every request and response it sees,
// and once node's http code has seen such objects the data path stays slower for the life of the process
// (docs/design.md; the numbers are in docs/performance.md). This checks what the routes answer and that
// node gets its own request and response objects back. Real server on 127.0.0.1, real LMDB in a
// temporary dir.
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import express from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sendJson, type BodyRequest } from '../../src/core/http-reply.js';
import { createHttpServer } from '../../src/server/http-api.js';
import { Store } from '../../src/storage/store.js';
import { silentLog } from '../../src/core/log.js';

const token = 'unit-test-token-0123456789abcdef';

// biome-ignore lint/complexity/noExcessiveLinesPerFunction: a describe() suite, not a function: its tests share one setup
describe('http api: routes other than /get, /set and /delete', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kvshard-http-api-'));
  let store: Store;
  let server: http.Server;
  let base: string;
  const seen: { url: string; req: object | null; res: object | null }[] = [];

  beforeAll(async () => {
    store = new Store({ path: join(dir, 'data'), replicationLog: true });
    const internalRoutes = express.Router();
    internalRoutes.post('/internal/echo', express.raw({ type: () => true, limit: 1024 }), (req: BodyRequest, res: ServerResponse) => {
      sendJson(res, 200, { bytes: (req.body as Buffer).length });
    });
    server = createHttpServer({
      role: { handle: () => ({ status: 200, headers: [], body: 'unused' }) },
      info: { shard: 'shard1', role: 'primary', address: '127.0.0.1:0' },
      status: () => ({ extra: 1 }),
      log: silentLog,
      token,
      store,
      internalRoutes,
    });
    server.prependListener('request', (req: IncomingMessage, res: ServerResponse) => {
      res.on('finish', () => seen.push({ url: req.url ?? '', req: Object.getPrototypeOf(req), res: Object.getPrototypeOf(res) }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers each route, and hands node its own request and response objects back', async () => {
    const health = await fetch(`${base}/health`, { signal: AbortSignal.timeout(5000) });
    expect(health.status).toBe(200);
    expect(health.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(await health.json()).toMatchObject({ status: 'ok', shard: 'shard1', role: 'primary', pid: process.pid });

    const status = await fetch(`${base}/status`, { signal: AbortSignal.timeout(5000) });
    expect(await status.json()).toMatchObject({ shard: 'shard1', extra: 1 });

    const wrongMethod = await fetch(`${base}/health`, { method: 'POST', signal: AbortSignal.timeout(5000) });
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.get('allow')).toBe('GET, HEAD');
    expect(wrongMethod.headers.get('x-kv-shard')).toBe('shard1');

    const unknown = await fetch(`${base}/nope?x=1`, { signal: AbortSignal.timeout(5000) });
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toMatchObject({ error: 'unknown_route', message: 'no route for /nope' });

    const noToken = await fetch(`${base}/internal/echo`, { method: 'POST', body: 'abc', signal: AbortSignal.timeout(5000) });
    expect(noToken.status).toBe(401);

    const echo = await fetch(`${base}/internal/echo`, { method: 'POST', body: 'abcd', headers: { 'x-kv-token': token }, signal: AbortSignal.timeout(5000) });
    expect(echo.status).toBe(200);
    expect(await echo.json()).toEqual({ bytes: 4 });

    const tooBig = await fetch(`${base}/internal/echo`, {
      method: 'POST',
      body: 'x'.repeat(2048),
      headers: { 'x-kv-token': token },
      signal: AbortSignal.timeout(5000),
    });
    expect(tooBig.status).toBe(413);

    const digest = await fetch(`${base}/internal/digest?buckets=2`, { headers: { 'x-kv-token': token }, signal: AbortSignal.timeout(5000) });
    expect(digest.status).toBe(200);
    expect((await digest.json()).ranges).toHaveLength(2);

    expect(seen.map((s) => s.url)).toEqual([
      '/health',
      '/status',
      '/health',
      '/nope?x=1',
      '/internal/echo',
      '/internal/echo',
      '/internal/echo',
      '/internal/digest?buckets=2',
    ]);
    for (const s of seen) {
      expect(s.req, s.url).toBe(http.IncomingMessage.prototype);
      expect(s.res, s.url).toBe(http.ServerResponse.prototype);
    }
  });
});
