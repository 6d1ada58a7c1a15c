// A node's log file: JSON lines with pino's fields and the node's shard, member, role and epoch, read
// after a switchover; a request error names the X-Request-Id its answer carried; the cluster token and
// stored values appear nowhere.

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { dataPath, request, testToken, useCluster } from '../helpers/cluster.js';
import { runFailover, waitRoles } from '../helpers/failover.js';

const cluster = useCluster(1);

/** Every line of member `member`'s log files, parsed (a line that is not JSON fails the test). */
function logLines(member: 'a' | 'b'): Record<string, any>[] {
  const dir = join(cluster().dataDir, 'logs');
  const files = readdirSync(dir).filter((f) => f.startsWith(`shard1-${member}.`) && f.endsWith('.log'));
  expect(files.length, `log files of shard1-${member} in ${dir}`).toBeGreaterThan(0);
  return files.flatMap((f) =>
    readFileSync(join(dir, f), 'utf8')
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => {
        try {
          return JSON.parse(line) as Record<string, any>;
        } catch {
          throw new Error(`${f}: not a JSON line: ${line.slice(0, 200)}`);
        }
      }),
  );
}

function rawLogs(): string {
  const dir = join(cluster().dataDir, 'logs');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.log'))
    .map((f) => readFileSync(join(dir, f), 'utf8'))
    .join('');
}

describe('node logs', () => {
  it('are JSON lines that follow a switchover, name request ids, and hold no token or value', async () => {
    const primary = cluster().address('shard1', 'primary');
    const secret = 'value-that-must-not-be-logged-7f3a';
    expect((await request(`http://${primary}${dataPath('set', 'logged-key', secret)}`)).status).toBe(200);
    // A client fault, with an id of the client's own: the answer and the log line both carry it.
    const bad = await request(`http://${primary}/get?key=a&value=${secret}`, { headers: { 'x-request-id': 'client-req-42' } });
    expect(bad.status).toBe(400);
    expect(bad.headers.get('x-request-id')).toBe('client-req-42');
    // Without one, the node makes one up.
    const unknown = await request(`http://${primary}/nope`);
    expect(unknown.status).toBe(404);
    const madeUp = unknown.headers.get('x-request-id');
    expect(madeUp).toMatch(/^[0-9a-f]{8}-[0-9a-z]+$/);
    // A successful answer carries none: the GET path stays as it is.
    expect((await request(`http://${primary}${dataPath('get', 'logged-key')}`)).headers.get('x-request-id')).toBeNull();

    const failover = await runFailover(cluster(), 'shard1');
    expect(failover.code, failover.stderr).toBe(0);
    await waitRoles(cluster(), 'shard1', 'replica');

    for (const member of ['a', 'b'] as const) {
      for (const line of logLines(member)) {
        expect(typeof line['time'], JSON.stringify(line)).toBe('string');
        expect(Number.isNaN(Date.parse(line['time']))).toBe(false);
        expect([20, 30, 40, 50]).toContain(line['level']);
        expect(typeof line['msg']).toBe('string');
        expect(line['shard']).toBe('shard1');
        expect(line['member']).toBe(member);
      }
    }
    const b = logLines('b');
    const promoted = b.find((l) => /changed from replica to primary/.test(l['msg']));
    expect(promoted, 'member b logs its promotion').toBeDefined();
    expect(promoted!['role']).toBe('primary');
    expect(promoted!['epoch']).toBe(2);
    expect(promoted!['level']).toBe(30);
    const a = logLines('a');
    const demoted = a.find((l) => /changed from primary to replica/.test(l['msg']));
    expect(demoted, 'member a logs its demotion').toBeDefined();
    expect(demoted!['role']).toBe('replica');
    expect(demoted!['epoch']).toBe(2);
    // Before the switchover, member a logged as primary at epoch 1.
    expect(a.find((l) => /listening on/.test(l['msg']))).toMatchObject({ role: 'primary', epoch: 1 });

    const fault = a.find((l) => l['request_id'] === 'client-req-42');
    expect(fault, 'the client fault is logged with its request id').toMatchObject({ level: 40, route: 'get', status: 400, code: 'bad_request' });
    expect(a.some((l) => l['request_id'] === madeUp && l['route'] === 'other' && l['status'] === 404)).toBe(true);

    const all = rawLogs();
    expect(all).not.toContain(testToken);
    expect(all).not.toContain(secret);
  });
});
