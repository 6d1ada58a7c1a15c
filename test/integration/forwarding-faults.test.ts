// Forwarding where the owner's answer is slow, lost or would not fit: a value that fits the client's
// URL but not once re-encoded, an ack=replica write that waits its full bound at the owner, and a write
// whose connection to the owner breaks after it was sent. The forwarding node relays what the owner
// said, or says honestly that the outcome is unknown.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { dataPath, keyOwnedBy, request, useCluster, waitFor } from '../helpers/cluster.js';
import { waitConverged } from '../helpers/replication.js';

const cluster = useCluster(2);
const viaShard1 = (path: string) => request(cluster().url('shard1', 'primary', path));
const atOwner = (path: string) => request(cluster().url('shard2', 'primary', path));

/** Whether a TCP socket listening side at `port` on 127.0.0.1 has bytes it has not read yet. */
function unreadBytesAt(port: number): boolean {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  return readFileSync('/proc/net/tcp', 'utf8')
    .split('\n')
    .slice(1)
    .some((line) => {
      const f = line.trim().split(/\s+/);
      // f[1] local address, f[3] state (01 established), f[4] tx_queue:rx_queue.
      return f[1] === local && f[3] === '01' && Number.parseInt(f[4]?.split(':')[1] ?? '0', 16) > 0;
    });
}

describe('forwarding faults', () => {
  it('a value that fits the client URL but not once percent-encoded is forwarded in a body', async () => {
    const key = keyOwnedBy('shard2', 2, 'url');
    // ':' travels raw from the client; re-encoded it takes three bytes, 36 KB against a 16 KB head bound.
    const value = ':'.repeat(12_000);
    const set = await viaShard1(`/set?key=${key}&value=${value}`);
    expect(set.status, set.text()).toBe(200);
    expect(set.headers.get('x-kv-shard')).toBe('shard2');
    expect((await atOwner(dataPath('get', key))).text()).toBe(value);
  });

  it('a forwarded ack=replica write gets the owner answer, which says it was committed', async () => {
    const key = keyOwnedBy('shard2', 2, 'ack');
    cluster().suspend('shard2', 'replica');
    try {
      const res = await viaShard1(dataPath('set', key, 'v', '&ack=replica'));
      expect(res.status).toBe(504);
      expect(res.json()).toMatchObject({ error: 'replica_timeout', committed_on_primary: true });
    } finally {
      cluster().resume('shard2', 'replica');
    }
    expect((await atOwner(dataPath('get', key))).text()).toBe('v');
  });

  it('a write whose connection to the owner breaks gets 502 shard_connection_lost, not a retriable 503', async () => {
    const key = keyOwnedBy('shard2', 2, 'lost');
    const port = Number(cluster().address('shard2').split(':').pop());
    // The read below comes from the replica, which holds the key once replication (asynchronous) caught up.
    await waitConverged(cluster(), 'shard2');
    cluster().suspend('shard2', 'primary');
    const pending = viaShard1(dataPath('set', key, 'maybe'));
    // The request sits in the stopped owner's socket; killing the owner then breaks the connection.
    await waitFor('the forwarded write to reach the stopped owner', () => unreadBytesAt(port));
    await cluster().kill('shard2', 'primary');
    const res = await pending;
    expect(res.status).toBe(502);
    expect(res.json()).toMatchObject({ error: 'shard_connection_lost', shard: 'shard2' });
    // Reads of the shard still go to its replica meanwhile.
    const read = await viaShard1(dataPath('get', keyOwnedBy('shard2', 2, 'url')));
    expect(read.status, read.text()).toBe(200);
    expect(read.headers.get('x-kv-role')).toBe('replica');
    await cluster().start('shard2', 'primary');
  });
});
