// `kvshard get`, `set` and `del`: one call of the routing client each (src/client), its answer printed as
// a person or a program wants it, and its error turned into the command's exit status.

import { isUtf8 } from 'node:buffer';
import { createReadStream } from 'node:fs';
import type { ShardConfig } from '../core/config.js';
import { valueBytesMax } from '../core/limits.js';
import { KvClient, KvClientError, type DeleteResult, type ReadFrom, type WriteResult } from '../client/index.js';
import { CommandError, exitForError, exitStatus, usageError } from './exit-status.js';

export type OutputFormat = 'table' | 'json';

/** Where a command's output goes: stdout for values and results, stderr for diagnostics. */
export interface Output {
  readonly format: OutputFormat;
  readonly stdout: (chunk: string | Uint8Array) => void;
}

export interface DataCallOptions {
  readonly endpoints: readonly string[];
  readonly timeoutMs: number;
  readonly readFrom: ReadFrom;
}

/**
 * Retries of one call at most; the deadline (timeoutMs) usually ends a call first. The client's own
 * default, given here so the command does not depend on it.
 */
const callRetriesMax = 10;

/** Runs `call` with a client of its own and closes it; the client's errors become command errors. */
async function withClient<T>(options: DataCallOptions, call: (client: KvClient) => Promise<T>): Promise<T> {
  let client: KvClient;
  try {
    client = new KvClient({ endpoints: options.endpoints, readFrom: options.readFrom, timeoutMs: options.timeoutMs, retries: callRetriesMax });
  } catch (err) {
    throw usageError(`--endpoints: ${(err as Error).message.replace(/^KvClient: /, '')}`);
  }
  try {
    return await call(client);
  } catch (err) {
    if (err instanceof KvClientError) throw commandErrorOf(err);
    throw err;
  } finally {
    await client.close();
  }
}

/** A client error as the command's: its code and message, with what a failed write left behind when the node said. */
function commandErrorOf(err: KvClientError): CommandError {
  const committed = err.committed ? ' (the write is committed on the primary)' : '';
  return new CommandError(err.code, `${err.message}${committed}`, exitForError(err.code, err.status));
}

/** `kvshard get KEY`: the value's bytes as they are, or one JSON object; exit 1 when the key is absent. */
export async function getCommand(options: DataCallOptions, key: string, out: Output): Promise<number> {
  const value = await withClient(options, (client) => client.get(key));
  if (value === undefined) throw new CommandError('not_found', `no key ${JSON.stringify(key)}`, exitStatus.no);
  if (out.format === 'table') {
    out.stdout(value);
  } else {
    const text = isUtf8(value);
    out.stdout(`${JSON.stringify({ key, value: value.toString(text ? 'utf8' : 'base64'), encoding: text ? 'utf8' : 'base64' })}\n`);
  }
  return exitStatus.ok;
}

/** A write's answer as one line of `name=value` pairs (the key is the one the command was given). */
function resultLine(result: WriteResult | DeleteResult): string {
  return `${Object.entries(result)
    .filter(([name]) => name !== 'key')
    .map(([name, value]) => `${name}=${typeof value === 'boolean' ? (value ? 'yes' : 'no') : String(value)}`)
    .join(' ')}\n`;
}

/** `kvshard set KEY ...`: prints where the write went. */
export async function setCommand(options: DataCallOptions, key: string, value: Buffer, ack: 'primary' | 'replica', out: Output): Promise<number> {
  const result = await withClient(options, (client) => client.set(key, value, { ack }));
  out.stdout(out.format === 'table' ? resultLine(result) : `${JSON.stringify(result)}\n`);
  return exitStatus.ok;
}

/** `kvshard del KEY`: prints the answer; exit 1 when there was no such key. */
export async function delCommand(options: DataCallOptions, key: string, ack: 'primary' | 'replica', out: Output): Promise<number> {
  const result = await withClient(options, (client) => client.delete(key, { ack }));
  out.stdout(out.format === 'table' ? resultLine(result) : `${JSON.stringify(result)}\n`);
  return result.deleted ? exitStatus.ok : exitStatus.no;
}

/** The shards of the cluster map the endpoints answer, each with its members in the config's order (a, b). */
export async function mapShards(options: DataCallOptions): Promise<ShardConfig[]> {
  const map = await withClient(options, (client) => client.cluster());
  return map.shards.map((s) => {
    const [address, replica] = Array.isArray(s.members) ? s.members : [];
    if (typeof address !== 'string' || typeof replica !== 'string') {
      throw new CommandError('bad_answer', `the cluster map names no members for shard ${JSON.stringify(s.name)}`, exitStatus.unavailable);
    }
    return { name: s.name, idx: s.idx, address, replica };
  });
}

function tooLarge(what: string): CommandError {
  return new CommandError('payload_too_large', `${what} holds over ${valueBytesMax} bytes; a value is at most ${valueBytesMax} bytes`, exitStatus.usage);
}

/** Reads a value from a stream (stdin, a file), refusing one over valueBytesMax without reading the rest. */
async function readBounded(stream: AsyncIterable<Buffer | string>, what: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
    size += bytes.length;
    // Leaving the loop destroys the stream: a larger value is not read to its end.
    if (size > valueBytesMax) throw tooLarge(what);
    chunks.push(bytes);
  }
  return Buffer.concat(chunks, size);
}

/** The bytes of file `path` as a value; a file that cannot be read is a usage error naming it. */
export async function readValueFile(path: string): Promise<Buffer> {
  try {
    return await readBounded(createReadStream(path), path);
  } catch (err) {
    if (err instanceof CommandError) throw err;
    throw usageError(`--file: cannot read ${path}: ${(err as Error).message}`);
  }
}

/** Every byte of standard input, as a value. */
export function readValueStdin(stdin: AsyncIterable<Buffer | string>): Promise<Buffer> {
  return readBounded(stdin, 'stdin');
}
