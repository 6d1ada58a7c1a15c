// The axios client of node-to-node internal requests off the hot paths (migration, layout exchange): a
// bounded keep-alive agent, a timeout, size bounds, the cluster token, no redirects or proxies, every
// status returned to the caller, and cancellation when the owning task stops.

import http from 'node:http';
import axios, { type AxiosInstance } from 'axios';
import { internalBodyBytesMax } from '../core/limits.js';
import { tokenHeader } from '../core/wire.js';

export interface InternalClientOptions {
  readonly token: string;
  readonly timeoutMs: number;
  /** The largest reply accepted. */
  readonly replyBytesMax: number;
  /** Sockets kept to each peer. */
  readonly socketsMax: number;
  readonly signal: AbortSignal;
  readonly baseURL?: string;
  /** Content type of request bodies; axios's default (JSON) when absent. */
  readonly contentType?: string;
}

export interface InternalClient {
  readonly client: AxiosInstance;
  /** Closes the agent's sockets. */
  close(): void;
}

export function internalClient(options: InternalClientOptions): InternalClient {
  const agent = new http.Agent({ keepAlive: true, maxSockets: options.socketsMax, maxFreeSockets: options.socketsMax, timeout: options.timeoutMs });
  const client = axios.create({
    ...(options.baseURL ? { baseURL: options.baseURL } : {}),
    httpAgent: agent,
    timeout: options.timeoutMs,
    maxBodyLength: internalBodyBytesMax,
    maxContentLength: options.replyBytesMax,
    maxRedirects: 0,
    proxy: false,
    responseType: 'json',
    headers: { [tokenHeader]: options.token, ...(options.contentType ? { 'content-type': options.contentType } : {}) },
    validateStatus: () => true,
    signal: options.signal,
  });
  return { client, close: () => agent.destroy() };
}
