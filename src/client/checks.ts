// What the client checks before it sends anything: its options, endpoints, keys, values and ack modes.
// A mistake in the caller's code is a TypeError at once; a key or value the server would refuse is the
// KvClientError the server would have answered, without the round trip.

import { isUtf8 } from 'node:buffer';
import { keyBytesMax, valueBytesMax } from '../core/limits.js';
import { KvClientError } from './errors.js';

/** host:port as the client accepts it, for its endpoints and for every member a cluster map names. */
export const addressPattern = /^[^\s/:]+:\d{1,5}$/;

/** An endpoint as host:port; `http://` is dropped, anything else (https, a path) refused. */
export function normalEndpoint(endpoint: string): string {
  const address = String(endpoint)
    .replace(/^http:\/\//, '')
    .replace(/\/+$/, '');
  if (!addressPattern.test(address)) throw new TypeError(`KvClient: endpoint ${JSON.stringify(endpoint)} is not host:port (kvshard speaks plain HTTP)`);
  return address;
}

/** A whole number option from `min` up; `fallback` when it is not given. */
export function intOption(value: number | undefined, name: string, min: number, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < min) throw new TypeError(`KvClient: ${name} must be an integer of at least ${min}, got ${String(value)}`);
  return value;
}

/** A key as the server requires it: 1 to keyBytesMax bytes of UTF-8 from well-formed text. */
export function keyBytesOf(key: string): Buffer {
  // \p{Cs} matches only a lone surrogate: with the u flag a pair is one code point.
  if (typeof key !== 'string' || key === '' || /\p{Cs}/u.test(key)) {
    throw new KvClientError({ code: 'bad_request', message: 'a key is a non-empty string of well-formed Unicode text' });
  }
  const bytes = Buffer.from(key, 'utf8');
  if (bytes.length > keyBytesMax)
    throw new KvClientError({ code: 'bad_request', message: `key is ${bytes.length} bytes; a key is at most ${keyBytesMax} bytes` });
  return bytes;
}

export function valueBytesOf(value: string | Uint8Array): Buffer {
  const bytes = typeof value === 'string' ? Buffer.from(value, 'utf8') : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (bytes.length > valueBytesMax) {
    throw new KvClientError({ code: 'payload_too_large', message: `value is ${bytes.length} bytes; a value is at most ${valueBytesMax} bytes` });
  }
  return bytes;
}

/** Values of at most this many bytes go in the query when they are valid UTF-8 (see valueParam). */
export const queryValueBytesMax = 512;

/**
 * The value parameter of a set's URL for a small value of valid UTF-8, or undefined when the value goes
 * in the body. A POST without a body costs the node no body read and the client one write fewer, which is
 * a measurable part of a small SET; the node decodes the parameter back to exactly these bytes.
 */
export function valueParam(bytes: Buffer): string | undefined {
  if (bytes.length > queryValueBytesMax || !isUtf8(bytes)) return undefined;
  return `&value=${encodeURIComponent(bytes.toString('utf8'))}`;
}

/** The ack parameter of a write's URL; none for the server's default (primary). */
export function ackParam(ack: 'primary' | 'replica' | undefined): string {
  if (ack === undefined) return '';
  if (ack !== 'primary' && ack !== 'replica') throw new TypeError("KvClient: ack is 'primary' or 'replica'");
  return `&ack=${ack}`;
}
