// Requests pipelined on one keep-alive connection take effect in the order they were sent, so a client
// reads its own writes: a SET followed at once by a GET of the same key sees the value, and after
// SET, GET, DELETE, GET the last GET finds nothing. This holds at the key's owner and through a node
// that forwards to the owner. Each case writes all its requests to one socket in a single write. At
// most 128 wait behind the one in progress: the next is refused and the connection closes after it.
import { describe, expect, it } from 'vitest';
import { dataPath, keyOwnedBy, useCluster } from '../helpers/cluster.js';
import { rawExchange, rawRequest } from '../helpers/raw-http.js';

const cluster = useCluster(2);

async function pipeline(address: string, paths: string[]) {
  const payload = paths.map((path) => rawRequest('GET', path)).join('');
  const { responses } = await rawExchange(address, payload, { responses: paths.length });
  expect(responses).toHaveLength(paths.length);
  return responses;
}

describe('pipelined requests on one connection', () => {
  it('reads its own write at the owner, 20 times out of 20', async () => {
    for (let i = 0; i < 20; i++) {
      const key = keyOwnedBy('shard1', 2, `pipe-own-${i}-`);
      const [set, get] = await pipeline(cluster().address('shard1'), [dataPath('set', key, `hello-${i}`), dataPath('get', key)]);
      expect(set!.status).toBe(200);
      expect(get!.status).toBe(200);
      expect(get!.text()).toBe(`hello-${i}`);
    }
  });

  it('applies SET, GET, DELETE, GET in order, at the owner and through a forwarding node', async () => {
    for (const via of ['shard2', 'shard1']) {
      for (let i = 0; i < 10; i++) {
        const key = keyOwnedBy('shard2', 2, `pipe-${via}-${i}-`);
        const [set, get, del, gone] = await pipeline(cluster().address(via), [
          dataPath('set', key, 'v'),
          dataPath('get', key),
          dataPath('delete', key),
          dataPath('get', key),
        ]);
        expect([set!.status, get!.status, del!.status, gone!.status]).toEqual([200, 200, 200, 404]);
        expect(get!.text()).toBe('v');
        expect(del!.json()).toMatchObject({ deleted: true });
      }
    }
  });

  it('keeps the order of a POSTed body and the reads after it', async () => {
    const key = keyOwnedBy('shard1', 2, 'pipe-post-');
    const payload =
      rawRequest('POST', `/set?key=${key}`, {}, 'posted') +
      rawRequest('GET', dataPath('get', key)) +
      rawRequest('POST', `/set?key=${key}`, {}, 'again') +
      rawRequest('GET', dataPath('get', key));
    const { responses } = await rawExchange(cluster().address('shard1'), payload, { responses: 4 });
    expect(responses.map((r) => r.status)).toEqual([200, 200, 200, 200]);
    expect(responses[1]!.text()).toBe('posted');
    expect(responses[3]!.text()).toBe('again');
  });

  it('refuses the request past 128 waiting with 503 and closes the connection, so nothing runs out of order', async () => {
    const key = keyOwnedBy('shard1', 2, 'pipe-full-');
    // A write (answered asynchronously) and 200 reads behind it, in one go.
    const paths = [dataPath('set', key, 'v'), ...Array.from({ length: 200 }, () => dataPath('get', key))];
    const payload = paths.map((path) => rawRequest('GET', path)).join('');
    const { responses, closed } = await rawExchange(cluster().address('shard1'), payload);
    expect(closed).toBe(true);
    expect(responses).toHaveLength(1 + 128 + 1);
    expect(responses.slice(0, 129).every((r) => r.status === 200)).toBe(true);
    expect(responses[129]!.status).toBe(503);
    expect(responses[129]!.json()).toMatchObject({ error: 'overloaded' });
    expect(responses[129]!.headers['connection']).toBe('close');
  });
});
