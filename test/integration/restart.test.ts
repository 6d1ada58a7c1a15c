// Acknowledged writes survive both a clean stop (SIGTERM) and a crash of the process (kill -9). A kill -9
// leaves the operating system's page cache intact, so this shows that an acknowledged write is committed,
// not that it is on disk: sync-before-ack.test.ts checks that a write is acknowledged only after its sync.
// A stopping node answers what is in flight and closes kept-alive connections as it answers them,
// leaving unprocessed what a client pipelined behind the answer that says close.
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { dataPath, keyOwnedBy, request, useCluster, waitFor } from '../helpers/cluster.js';
import { parseResponses, rawRequest, target } from '../helpers/raw-http.js';

// Two shards with their replicas: a restarted primary takes writes once a majority of the four nodes
// has confirmed its epochs (failover.md).
const cluster = useCluster(2);
const key = (prefix: string, i: number) => keyOwnedBy('shard1', 2, `${prefix}${i}-`);

async function writeMany(prefix: string, count: number): Promise<void> {
  await Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const res = await request(cluster().url('shard1', 'primary', dataPath('set', key(prefix, i), `value-${i}`)));
      expect(res.status).toBe(200);
    }),
  );
}

async function expectAll(prefix: string, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const res = await request(cluster().url('shard1', 'primary', dataPath('get', key(prefix, i))));
    expect(res.status).toBe(200);
    expect(res.text()).toBe(`value-${i}`);
  }
}

describe('restarts', () => {
  it('keeps data across SIGTERM and start, exiting 0', async () => {
    await writeMany('clean-', 200);
    expect(await cluster().stop('shard1', 'primary')).toBe(0);
    await cluster().start('shard1', 'primary');
    await expectAll('clean-', 200);
  });

  it('keeps every acknowledged write across a crash of the process (kill -9)', async () => {
    await writeMany('killed-', 500);
    await cluster().kill('shard1', 'primary');
    await cluster().start('shard1', 'primary');
    await expectAll('killed-', 500);
  });

  it('answers a request in flight at SIGTERM, closes a kept-alive connection with its next answer and processes nothing pipelined behind it', async () => {
    const node = target(cluster().address('shard1'));
    const socket = net.connect(node);
    let received = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
    });
    socket.on('error', () => undefined);
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    // A write whose body is still arriving when the node is told to stop.
    socket.write(`POST ${dataPath('set', key('drain-', 0))} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\na`);
    await waitFor('the body counted in flight', async () => {
      const s = (await request(cluster().url('shard1', 'primary', '/status'))).json();
      return s['requests']['body_bytes_in_flight'] >= 1;
    });
    const stopped = cluster().stop('shard1', 'primary');
    // The node has begun its drain once it takes no new connection.
    await waitFor(
      'the node to refuse new connections',
      () =>
        new Promise<boolean>((resolve) => {
          const probe = net.connect(node);
          probe.on('connect', () => {
            probe.destroy();
            resolve(false);
          });
          probe.on('error', () => resolve(true));
        }),
    );
    // The rest of the body, and two more writes pipelined on the same kept-alive connection.
    socket.write(`b${rawRequest('GET', dataPath('set', key('drain-', 1), 'second'))}${rawRequest('GET', dataPath('set', key('drain-', 2), 'third'))}`);
    await closed;
    const answers = parseResponses(received).responses;
    expect(answers.map((a) => a.status)).toEqual([200, 200]);
    expect(answers[1]!.headers['connection']).toBe('close');
    expect(await stopped).toBe(0);
    await cluster().start('shard1', 'primary');
    expect((await request(cluster().url('shard1', 'primary', dataPath('get', key('drain-', 0))))).text()).toBe('ab');
    expect((await request(cluster().url('shard1', 'primary', dataPath('get', key('drain-', 1))))).text()).toBe('second');
    // The write pipelined behind the answer that said close was not processed: the client resends it.
    expect((await request(cluster().url('shard1', 'primary', dataPath('get', key('drain-', 2))))).status).toBe(404);
  });
});
