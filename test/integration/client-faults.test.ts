// A client's fault is not a server bug: a POST body cut off half way, a malformed chunked body and
// malformed JSON on an internal route get a 4xx (or a closed socket) and at most one log line without
// a stack. The node goes on serving, and "internal error" with a stack stays reserved for bugs.
import { describe, expect, it } from 'vitest';
import { dataPath, request, testToken, waitFor, useCluster } from '../helpers/cluster.js';
import { rawExchange, rawRequest } from '../helpers/raw-http.js';

const cluster = useCluster(1);

const output = () => cluster().output('shard1', 'primary');

/** Waits (bounded) until the primary's log has grown by a line that matches `pattern`. */
function waitForLog(from: number, pattern: RegExp): Promise<string> {
  return waitFor(`a log line matching ${pattern}`, () => {
    const added = output().slice(from);
    return pattern.test(added) && added;
  });
}

function expectNoBugReport(log: string) {
  expect(log).not.toMatch(/internal error/);
  expect(log).not.toMatch(/\n\s+at /);
}

describe('client faults', () => {
  it('a POST body cut off half way', async () => {
    const from = output().length;
    await rawExchange(cluster().address('shard1'), 'POST /set?key=cut HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789', {
      destroyAfterWrite: true,
    });
    const log = await waitForLog(from, /internal error|client/);
    expectNoBugReport(log);
    expect((await request(cluster().url('shard1', 'primary', dataPath('get', 'cut')))).status).toBe(404);
  });

  it('a malformed chunked body', async () => {
    const from = output().length;
    const { responses } = await rawExchange(
      cluster().address('shard1'),
      'POST /set?key=chunky HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\nabc\r\n0\r\n\r\n',
    );
    for (const res of responses) {
      expect(res.status).toBe(400);
      expect(res.json().error).toBe('bad_request');
    }
    const log = await waitForLog(from, /internal error|client/);
    expectNoBugReport(log);
    expect((await request(cluster().url('shard1', 'primary', dataPath('get', 'chunky')))).status).toBe(404);
  });

  it('malformed JSON on /internal/layout', async () => {
    const from = output().length;
    const { responses } = await rawExchange(
      cluster().address('shard1'),
      rawRequest('POST', '/internal/layout', { 'X-Kv-Token': testToken, 'Content-Type': 'application/json' }, '{"from": "shard9/primary", '),
      { responses: 1 },
    );
    expect(responses[0]!.status).toBe(400);
    expect(responses[0]!.json().error).toBe('bad_request');
    // Give the node a request after the fault, so a log line the fault caused is written by then.
    expect((await request(cluster().url('shard1', 'primary', '/health'))).status).toBe(200);
    expectNoBugReport(output().slice(from));
  });
});
