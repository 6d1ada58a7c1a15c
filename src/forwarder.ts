// Forwarding data requests to the node that owns the key, over HTTP with keep-alive connections.
// Every call has a timeout and a size bound; the owner's status, X-Kv-* headers and body are relayed
// unchanged.

import http from 'node:http';
import axios, { type AxiosInstance, isAxiosError } from 'axios';
import { encodeDataPath, forwardedByHeader, forwardedTopologyHeader, type DataReply, type DataRequest } from './data-request.js';
import { ShardTimeoutError, ShardUnavailableError } from './errors.js';
import { forwardTimeoutMs, keepAliveIdleMs, peerSocketsMax, valueBytesMax } from './limits.js';

/** Room for headers and a JSON envelope around the largest value. */
const replyBytesMax = valueBytesMax + 64 * 1024;

export interface Peer {
  readonly shard: string;
  readonly address: string;
}

export interface ForwarderOptions {
  /** `<shard>/<role>` of this node, sent as the forwarded marker. */
  readonly self: string;
  readonly topologyId: string;
  readonly timeoutMs?: number;
}

export class Forwarder {
  private readonly agent: http.Agent;
  private readonly client: AxiosInstance;
  private readonly timeoutMs: number;

  constructor(private readonly options: ForwarderOptions) {
    this.timeoutMs = options.timeoutMs ?? forwardTimeoutMs;
    this.agent = new http.Agent({
      keepAlive: true,
      keepAliveMsecs: 1_000,
      maxSockets: peerSocketsMax,
      maxFreeSockets: peerSocketsMax,
      timeout: keepAliveIdleMs,
      scheduling: 'lifo',
    });
    this.client = axios.create({
      httpAgent: this.agent,
      timeout: this.timeoutMs,
      maxContentLength: replyBytesMax,
      maxBodyLength: replyBytesMax,
      maxRedirects: 0,
      // Peers are on the cluster network: an HTTP_PROXY in the environment must not reroute them.
      proxy: false,
      decompress: false,
      responseType: 'arraybuffer',
      transformRequest: [(data: unknown) => data],
      transformResponse: [(data: unknown) => data],
      validateStatus: () => true,
      transitional: { clarifyTimeoutError: true, silentJSONParsing: false, forcedJSONParsing: false },
    });
  }

  /** Sends `req` to `peer` and returns its reply. Throws ShardUnavailableError or ShardTimeoutError. */
  async forward(peer: Peer, req: DataRequest): Promise<DataReply> {
    const headers: Record<string, string> = {
      [forwardedByHeader]: this.options.self,
      [forwardedTopologyHeader]: this.options.topologyId,
    };
    const body = req.valueInBody ? req.value : undefined;
    if (body !== undefined) headers['content-type'] = 'application/octet-stream';
    try {
      const response = await this.client.request<ArrayBuffer>({
        method: req.method,
        url: `http://${peer.address}${encodeDataPath(req)}`,
        headers,
        data: body,
      });
      return { status: response.status, headers: relayedHeaders(response.headers), body: toBuffer(response.data) };
    } catch (err) {
      throw this.translate(err, peer);
    }
  }

  private translate(err: unknown, peer: Peer): Error {
    if (!isAxiosError(err)) return err as Error;
    if (err.code === 'ETIMEDOUT' || err.code === 'ECONNABORTED' || err.code === 'ERR_CANCELED') {
      return new ShardTimeoutError(peer.shard, peer.address, this.timeoutMs);
    }
    return new ShardUnavailableError(peer.shard, peer.address, err.code ?? err.message);
  }

  close(): void {
    this.agent.destroy();
  }
}

function toBuffer(data: unknown): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (data instanceof ArrayBuffer) return Buffer.from(data);
  if (data === undefined || data === null) return Buffer.alloc(0);
  return Buffer.from(String(data));
}

function relayedHeaders(source: Record<string, unknown>): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(source)) {
    const lower = name.toLowerCase();
    if ((lower.startsWith('x-kv-') || lower === 'content-type') && value !== undefined && value !== null) {
      headers[lower] = String(value);
    }
  }
  return headers;
}
