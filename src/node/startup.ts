// Start-up and shutdown steps of a node that are not about its parts: binding its address with a clear
// refusal, deciding (and recording) its layout before it serves, and closing connections as answered.

import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { ConfigError, layoutRecord, parseAddress, type Config, type RoleName } from '../core/config.js';
import { decideLayoutStart } from '../cluster/layout-start.js';
import { StartupError } from '../storage/data-dir-lock.js';
import type { Store } from '../storage/store.js';
import type { LayoutStanding } from './role-factories.js';

/** Binds `address`, turning the usual refusals into one line for the operator. */
export async function listenOn(server: Server, address: string): Promise<void> {
  const { host, port } = parseAddress(address)!;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') throw new StartupError(`cannot listen on ${address}: the address is already in use by another process`);
    if (code === 'EADDRNOTAVAIL') throw new StartupError(`cannot listen on ${address}: it is not an address of this host`);
    if (code === 'EACCES') throw new StartupError(`cannot listen on ${address}: permission denied`);
    throw err;
  }
}

/** Decides the start-up layout (see layout-start.ts) from the store and the config, and records what it decides. */
export async function prepareLayout(store: Store, config: Config, name: string, role: RoleName): Promise<LayoutStanding> {
  const start = decideLayoutStart({
    config,
    name,
    role,
    path: store.path,
    stored: store.migrations.layout(),
    migration: store.migrations.migration(),
    now: Date.now(),
  });
  switch (start.kind) {
    case 'refuse':
      throw new ConfigError([start.message]);
    case 'learn-from-peers':
      return { decided: false, record: undefined };
    case 'start-as-is':
      return { decided: true, record: start.record };
    case 'record-layout':
      await store.migrations.recordLayout(layoutRecord(config));
      return { decided: true, record: start.record };
    case 'start-migration':
      await store.migrations.recordLayout(layoutRecord(config), start.record);
      return { decided: true, record: start.record };
  }
}

/**
 * From now on, the first request a connection sends is answered with Connection: close, and any request
 * pipelined behind it is left unprocessed (RFC 9112 9.6: a server that says close does not process
 * later requests), so the client knows to send it again elsewhere. Without this, a kept-alive client
 * that goes on sending holds its connection, and so the drain, until the drain's deadline.
 */
export function closeConnectionsAsAnswered(server: Server): void {
  const handlers = server.listeners('request') as ((req: IncomingMessage, res: ServerResponse) => void)[];
  const closing = new WeakSet<object>();
  server.removeAllListeners('request');
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (closing.has(req.socket)) return;
    closing.add(req.socket);
    res.shouldKeepAlive = false;
    for (const handler of handlers) handler.call(server, req, res);
  });
}
