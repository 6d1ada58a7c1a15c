// Request bodies in flight have one bound per process (64 MiB: four maximal values), counted as their
// bytes arrive. The upload that passes it gets 503 overloaded with Retry-After before more of it is read,
// whether it declared its length or comes chunked; the uploads within it complete, /status shows the bytes
// in flight and their peak, which never passes the bound, and the node keeps serving meanwhile. Bodies
// only announced hold nothing, and a connection that closes gives back what its uploads held.
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { dataPath, request, waitFor, useCluster } from '../helpers/cluster.js';
import { parseResponses, type RawResponse, target } from '../helpers/raw-http.js';
import { status } from '../helpers/replication.js';

const mib = 1024 * 1024;
const boundBytes = 64 * mib;

const cluster = useCluster(1);

/** An upload on its own connection that the test feeds piece by piece, and its answer when it comes. */
class Upload {
  readonly socket: net.Socket;
  readonly answer: Promise<RawResponse | undefined>;
  private received = Buffer.alloc(0);

  constructor(address: string, head: string) {
    this.socket = net.connect(target(address));
    this.socket.on('error', () => undefined);
    this.socket.write(head);
    this.answer = new Promise((resolve) => {
      this.socket.on('data', (chunk: Buffer) => {
        this.received = Buffer.concat([this.received, chunk]);
        const [first] = parseResponses(this.received).responses;
        if (first) resolve(first);
      });
      this.socket.on('close', () => resolve(parseResponses(this.received).responses[0]));
    });
  }

  /** Writes and waits until the kernel took it (bounded by the test's timeout). */
  send(data: Buffer | string): Promise<void> {
    return new Promise((resolve) => {
      if (this.socket.destroyed) return resolve();
      this.socket.write(data, () => resolve());
    });
  }

  close(): void {
    this.socket.destroy();
  }
}

const head = (key: string, headers: string) => `POST /set?key=${key} HTTP/1.1\r\nHost: kvshard\r\n${headers}\r\n`;

function expectOverloaded(res: RawResponse | undefined): void {
  expect(res?.status).toBe(503);
  expect(res?.json()).toMatchObject({ error: 'overloaded', retriable: true });
  expect(res?.headers['retry-after']).toBe('1');
}

describe('request bodies in flight', () => {
  it('refuses the declared upload that passes the bound, before reading more of it, and completes the others', async () => {
    const address = cluster().address('shard1');
    const uploads = Array.from({ length: 5 }, (_, i) => new Upload(address, head(`declared-${i}`, `Content-Length: ${16 * mib}\r\n`)));
    try {
      const piece = Buffer.alloc(mib, 0x61);
      const refused = Promise.race(uploads.map((u, i) => u.answer.then((res) => ({ res, i }))));
      // 13 rounds of 1 MiB on each of 5 uploads is 65 MiB: one of them passes the 64 MiB bound.
      for (let round = 0; round < 13; round++) for (const upload of uploads) await upload.send(piece);
      const { res, i } = await refused;
      expectOverloaded(res);
      expect((await request(cluster().url('shard1', 'primary', dataPath('get', 'declared-0')))).status).toBe(404);

      const rest = uploads.filter((_, n) => n !== i);
      for (const upload of rest) for (let round = 13; round < 16; round++) await upload.send(piece);
      for (const upload of rest) expect((await upload.answer)?.status).toBe(200);
      const after = await status(cluster(), 'shard1', 'primary');
      expect(after['requests']['body_bytes_in_flight_peak']).toBeLessThanOrEqual(boundBytes);
      expect(after['requests']['refused_overloaded']).toBeGreaterThanOrEqual(1);
      const completed = i === 0 ? 1 : 0;
      const stored = await request(cluster().url('shard1', 'primary', dataPath('get', `declared-${completed}`)));
      expect(stored.body.length).toBe(16 * mib);
    } finally {
      for (const upload of uploads) upload.close();
    }
  });

  it('holds nothing for bodies only announced, so they cannot lock out other uploads', async () => {
    const address = cluster().address('shard1');
    const idle = Array.from({ length: 8 }, (_, i) => new Upload(address, head(`announced-${i}`, `Content-Length: ${16 * mib}\r\n`)));
    try {
      const body = Buffer.alloc(2 * mib, 0x63);
      const res = await request(cluster().url('shard1', 'primary', '/set?key=beside-announced'), { method: 'POST', body });
      expect(res.status).toBe(200);
      expect((await status(cluster(), 'shard1', 'primary'))['requests']['body_bytes_in_flight']).toBe(0);
    } finally {
      for (const upload of idle) upload.close();
    }
  });

  it('releases what a pipelined upload held when its connection closes before its turn', async () => {
    const address = cluster().address('shard1');
    // A write first (answered asynchronously), then an upload queued behind it, then the connection goes.
    const upload = new Upload(address, `GET /set?key=first&value=1 HTTP/1.1\r\nHost: kvshard\r\n\r\n${head('queued', `Content-Length: ${2 * mib}\r\n`)}`);
    await upload.send(Buffer.alloc(mib, 0x64));
    upload.close();
    await waitFor(
      'the closed connection giving its body bytes back',
      async () => (await status(cluster(), 'shard1', 'primary'))['requests']['body_bytes_in_flight'] === 0,
    );
    const res = await request(cluster().url('shard1', 'primary', '/set?key=after-close'), { method: 'POST', body: Buffer.alloc(mib, 0x65) });
    expect(res.status).toBe(200);
  });

  it('counts chunked bodies as they arrive and refuses the one that passes the bound', async () => {
    const address = cluster().address('shard1');
    const uploads = Array.from({ length: 5 }, (_, i) => new Upload(address, head(`chunked-${i}`, 'Transfer-Encoding: chunked\r\n')));
    try {
      const chunk = Buffer.concat([Buffer.from(`${mib.toString(16)}\r\n`), Buffer.alloc(mib, 0x62), Buffer.from('\r\n')]);
      // 5 x 14 MiB = 70 MiB arrive, which cannot all be held: at least one is refused.
      const answered = Promise.race(uploads.map((u) => u.answer));
      for (let n = 0; n < 14; n++) for (const upload of uploads) await upload.send(chunk);
      expectOverloaded(await answered);
      const peak = (await status(cluster(), 'shard1', 'primary'))['requests']['body_bytes_in_flight_peak'];
      expect(peak).toBeLessThanOrEqual(boundBytes);
      expect((await request(cluster().url('shard1', 'primary', '/health'))).status).toBe(200);
      for (const upload of uploads) await upload.send('0\r\n\r\n');
      const answers = await Promise.all(uploads.map((u) => u.answer));
      const ok = answers.filter((res) => res?.status === 200).length;
      const refused = answers.filter((res) => res?.status === 503).length;
      expect(ok + refused).toBe(5);
      expect(ok).toBeGreaterThanOrEqual(1);
      expect(refused).toBeGreaterThanOrEqual(1);
      expect((await status(cluster(), 'shard1', 'primary'))['requests']['body_bytes_in_flight']).toBe(0);
    } finally {
      for (const upload of uploads) upload.close();
    }
  });
});
