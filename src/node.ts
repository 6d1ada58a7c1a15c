// One kvshard process: a primary or a replica of one shard. Owns its store, its forwarder and its HTTP
// server, and closes them in order: stop accepting, drain in-flight requests, then close LMDB.

import type { Server } from 'node:http';
import { join } from 'node:path';
import { parseAddress, type Config, type ShardConfig } from './config.js';
import { Forwarder } from './forwarder.js';
import { createHttpServer } from './http-api.js';
import { shutdownDrainMs } from './limits.js';
import { primaryRole, replicaRole, type RoleContext, type RoleName } from './roles.js';
import { Store } from './store.js';

export interface NodeOptions {
  readonly config: Config;
  readonly shard: ShardConfig;
  readonly role: RoleName;
  readonly dataDir: string;
  readonly log: (message: string) => void;
}

export class KvNode {
  private closing: Promise<void> | undefined;

  private constructor(
    readonly options: NodeOptions,
    readonly address: string,
    private readonly store: Store,
    private readonly forwarder: Forwarder,
    private readonly server: Server,
  ) {}

  static async start(options: NodeOptions): Promise<KvNode> {
    const { config, shard, role, dataDir, log } = options;
    const address = role === 'primary' ? shard.address : shard.replica;
    const listen = parseAddress(address)!;
    const store = new Store(join(dataDir, `${shard.name}-${role}`));
    const forwarder = new Forwarder({ self: `${shard.name}/${role}`, topologyId: config.topologyId });
    const ctx: RoleContext = { config, shard, store, forwarder };
    const server = createHttpServer({
      role: role === 'primary' ? primaryRole(ctx) : replicaRole(ctx),
      info: { shard: shard.name, role, address },
      status: () => ({ keys: store.count(), topology: config.topologyId, shards: config.shards.length }),
      log,
    });
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(listen.port, listen.host, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      forwarder.close();
      await store.close();
      throw err;
    }
    log(`${shard.name} ${role} listening on ${address}, data in ${store.path}, topology ${config.topologyId}`);
    return new KvNode(options, address, store, forwarder, server);
  }

  /** Stops accepting, lets in-flight requests finish (bounded by shutdownDrainMs), then closes LMDB. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    const deadline = new Promise<void>((resolve) => setTimeout(resolve, shutdownDrainMs).unref());
    await Promise.race([closed, deadline]);
    this.server.closeAllConnections();
    this.forwarder.close();
    await this.store.close();
    this.options.log(`${this.options.shard.name} ${this.options.role} stopped`);
  }
}
