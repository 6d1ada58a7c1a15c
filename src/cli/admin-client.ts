// The one HTTP client of the admin commands (status, verify, failover): axios over a kept-alive agent,
// off every node's path, so its CPU per request does not matter. One timeout rule for every call: a
// deadline that covers connecting, waiting and reading the whole reply (axios's own `timeout` only
// bounds a pause of the socket, which a trickling reply keeps short), adminTimeoutMs unless the call
// waits for work the node does first (a failover) and names its own.

import http from 'node:http';
import axios, { type AxiosError, type AxiosInstance } from 'axios';
import { adminReplyBytesMax, adminTimeoutMs } from '../core/limits.js';
import { tokenHeader } from '../core/wire.js';
import { CommandError, exitForError, exitStatus, tokenMismatch } from './exit-status.js';

export interface AdminCall {
  /** The whole call's deadline (default adminTimeoutMs). */
  readonly timeoutMs?: number;
  readonly params?: Record<string, string | number>;
}

/** A call's axios options: its parameters and its one deadline, as the socket timeout and as an abort. */
function withDeadline(call: AdminCall): { params: AdminCall['params']; timeout: number; signal: AbortSignal } {
  const timeoutMs = call.timeoutMs ?? adminTimeoutMs;
  return { params: call.params, timeout: timeoutMs, signal: AbortSignal.timeout(timeoutMs) };
}

export class AdminClient {
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  private readonly client: AxiosInstance;

  constructor(token?: string) {
    this.client = axios.create({
      httpAgent: this.agent,
      maxContentLength: adminReplyBytesMax,
      maxRedirects: 0,
      proxy: false,
      responseType: 'json',
      headers: token ? { [tokenHeader]: token } : {},
    });
  }

  /** GET http://address/path; resolves with the parsed JSON reply of a 2xx, else rejects (adminError() reads it). */
  async get<T>(address: string, path: string, call: AdminCall = {}): Promise<T> {
    return (await this.client.get<T>(`http://${address}${path}`, withDeadline(call))).data;
  }

  /** POST a JSON body to http://address/path, with the same reply and deadline rules as get(). */
  async post<T>(address: string, path: string, body: unknown, call: AdminCall = {}): Promise<T> {
    return (await this.client.post<T>(`http://${address}${path}`, body, { ...withDeadline(call), maxBodyLength: adminReplyBytesMax })).data;
  }

  close(): void {
    this.agent.destroy();
  }
}

/** Runs `use` with a new admin client and closes it afterwards. */
export async function withAdminClient<T>(token: string | undefined, use: (client: AdminClient) => Promise<T>): Promise<T> {
  const client = new AdminClient(token);
  try {
    return await use(client);
  } finally {
    client.close();
  }
}

/** The JSON body of a node's error answer to an admin call ({} when it is not a JSON object), or undefined when no node answered. */
function errorBody(err: unknown): Record<string, unknown> | undefined {
  if (!axios.isAxiosError(err) || err.response === undefined) return undefined;
  const data: unknown = err.response.data;
  return typeof data === 'object' && data !== null ? (data as Record<string, unknown>) : {};
}

/** The message of a node's JSON error answer to an admin call, or undefined when no node answered. */
export function answerMessage(err: unknown): string | undefined {
  const body = errorBody(err);
  if (body === undefined) return undefined;
  return typeof body['message'] === 'string' ? body['message'] : `HTTP ${(err as AxiosError).response!.status}`;
}

/** Why an admin call failed, as a command error (axios names a 401 only ERR_BAD_REQUEST). */
export function adminError(err: unknown): CommandError {
  if (!axios.isAxiosError(err)) return new CommandError('bad_answer', (err as Error).message, exitStatus.unavailable);
  const status = err.response?.status;
  const url = err.config?.url ?? 'a node';
  if (status === 401) return new CommandError('unauthorized', tokenMismatch, exitStatus.unauthorized);
  if (status !== undefined) {
    const body = errorBody(err)!;
    const code = typeof body['error'] === 'string' ? body['error'] : `http_${status}`;
    const detail = typeof body['message'] === 'string' ? body['message'] : JSON.stringify(err.response?.data ?? '').slice(0, 200);
    return new CommandError(code, `${url} answered ${status}: ${detail}`, exitForError(code, status));
  }
  // The deadline's abort reaches axios as a cancel; a pause of the socket as ECONNABORTED.
  const timedOut = err.code === 'ECONNABORTED' || err.code === 'ETIMEDOUT' || err.code === 'ERR_CANCELED';
  return new CommandError(
    timedOut ? 'timeout' : 'unavailable',
    `${url}: ${timedOut ? 'no answer before the deadline' : (err.code ?? err.message)}`,
    exitStatus.unavailable,
  );
}
