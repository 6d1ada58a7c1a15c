// The admin commands' one timeout rule: a call ends by its deadline whatever the node does, also when it
// answers a byte at a time (a pause never lasts long enough for a socket timeout alone), and the error
// says timeout. Against real loopback servers.
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { AdminClient, adminError } from '../../src/cli/admin-client.js';

let servers: net.Server[] = [];
const sockets = new Set<net.Socket>();
afterEach(async () => {
  for (const socket of sockets) socket.destroy();
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  servers = [];
});

/** A server that handles each connection with `serve`; resolves with its host:port. */
async function server(serve: (socket: net.Socket) => void): Promise<string> {
  const s = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    serve(socket);
  });
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return `127.0.0.1:${(s.address() as net.AddressInfo).port}`;
}

/** How a call ended: its error as a command error, and how long it took. */
async function failedCall(address: string, timeoutMs: number): Promise<{ code: string; ms: number }> {
  const client = new AdminClient();
  const started = Date.now();
  try {
    await client.get(address, '/status', { timeoutMs });
  } catch (err) {
    return { code: adminError(err).code, ms: Date.now() - started };
  } finally {
    client.close();
  }
  throw new Error('the call succeeded');
}

describe('AdminClient', () => {
  it('ends a call whose answer trickles in at its deadline, as a timeout', async () => {
    const address = await server((socket) => {
      socket.write('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n');
      const trickle = setInterval(() => socket.write(' '), 50);
      socket.on('close', () => clearInterval(trickle));
    });
    const { code, ms } = await failedCall(address, 600);
    expect(code).toBe('timeout');
    expect(ms).toBeGreaterThanOrEqual(590);
  });

  it('ends a call nobody answers at its deadline, as a timeout', async () => {
    const address = await server(() => undefined);
    expect((await failedCall(address, 300)).code).toBe('timeout');
  });

  it('reads a JSON answer, and names a refusal by its error code', async () => {
    const address = await server((socket) => {
      // One request per packet is enough for these small GETs; the connection stays open for the next.
      socket.on('data', (head: Buffer) => {
        const refused = head.toString('latin1').startsWith('GET /refuse');
        const body = refused ? '{"error":"failover_refused","message":"no"}' : '{"role":"primary"}';
        socket.write(`HTTP/1.1 ${refused ? '409 Conflict' : '200 OK'}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
      });
    });
    const client = new AdminClient('token-0123456789abcdef');
    try {
      expect(await client.get(address, '/status')).toEqual({ role: 'primary' });
      const err = await client.get(address, '/refuse').catch((e: unknown) => adminError(e));
      expect(err).toMatchObject({ code: 'failover_refused', exit: 5 });
    } finally {
      client.close();
    }
  });
});
