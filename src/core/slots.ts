// Routing: key -> slot -> shard. Pure functions, no I/O.
//
// slot  = CRC16-XMODEM(key or its {hash tag}) mod 16384, exactly Redis Cluster's CLUSTER KEYSLOT.
// shard = jump consistent hash (Lamping & Veach 2014) of the slot over the shard count, so growing
//         from N to N+1 shards moves only about 1/(N+1) of the slots.

import { slotCount } from './limits.js';

const crcTable = buildCrc16Table();

function buildCrc16Table(): Uint16Array {
  const table = new Uint16Array(256);
  for (let byte = 0; byte < 256; byte++) {
    let crc = byte << 8;
    for (let bit = 0; bit < 8; bit++) {
      crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
    table[byte] = crc;
  }
  return table;
}

/** CRC16-XMODEM (polynomial 0x1021, initial value 0), the checksum Redis Cluster uses. */
export function crc16(bytes: Uint8Array, start = 0, end = bytes.length): number {
  let crc = 0;
  for (let i = start; i < end; i++) {
    crc = ((crc << 8) & 0xffff) ^ crcTable[((crc >> 8) ^ bytes[i]!) & 0xff]!;
  }
  return crc;
}

const openBrace = 0x7b;
const closeBrace = 0x7d;

/**
 * The slot of a key. When the key contains `{`, and a `}` follows it with at least one byte between
 * them, only those bytes are hashed (Redis's hash tags: `{user42}.name` and `{user42}.email` share a slot).
 */
export function keySlot(key: Uint8Array): number {
  const open = key.indexOf(openBrace);
  if (open !== -1) {
    const close = key.indexOf(closeBrace, open + 1);
    if (close > open + 1) return crc16(key, open + 1, close) % slotCount;
  }
  return crc16(key) % slotCount;
}

const mask64 = (1n << 64n) - 1n;
const jumpMultiplier = 2862933555777941757n;

/** Jump consistent hash: maps a 64-bit key to a bucket in [0, buckets). */
export function jumpHash(key: number, buckets: number): number {
  if (!Number.isInteger(buckets) || buckets < 1) throw new RangeError(`jumpHash: buckets must be >= 1, got ${buckets}`);
  let k = BigInt(key) & mask64;
  let b = -1;
  let j = 0;
  while (j < buckets) {
    b = j;
    k = (k * jumpMultiplier + 1n) & mask64;
    j = Math.floor((b + 1) * (2 ** 31 / (Number(k >> 33n) + 1)));
  }
  return b;
}

/** The owning shard index of every slot for a given shard count, computed once per layout. */
export function slotTable(shardCount: number): Uint16Array {
  const table = new Uint16Array(slotCount);
  for (let slot = 0; slot < slotCount; slot++) table[slot] = jumpHash(slot, shardCount);
  return table;
}
