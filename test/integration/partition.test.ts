// Six members, three shards of a primary and a replica, each run as a host of its own: a network
// namespace on a bridge. shard1's primary is cut off by setting its link down, so packets to it vanish
// instead of being refused. The other primaries then answer reads of shard1's keys from shard1's
// replica, refuse writes of them with 503 shard_unavailable, and show shard1's primary as down in their
// /status. Once the link is up again, they find the primary up by themselves and read from it again.
//
// Needs root and iproute2's `ip`; without them the test is skipped, except under CI=true, where it fails.
import { describe, expect, it } from 'vitest';
import { dataPath, keyOwnedBy, request, type Reply } from '../helpers/cluster.js';
import { netnsUnavailable, useNetnsCluster } from '../helpers/netns.js';
import { waitConverged } from '../helpers/replication.js';
import { needsTool } from '../helpers/tool-gate.js';

/** Every member has an address of its own, so all of them listen on the same port. */
const port = 7000;
/** Bound on each test and hook: setting up six namespaces and nodes, or one phase of bounded requests. */
const testTimeoutMs = 120_000;
/** A client request's timeout: above the nodes' 5 s forward timeout, so the test sees the node's answer. */
const clientTimeoutMs = 10_000;
const cutReads = 30;
/**
 * Time one series of reads may take; reads left when it is spent are not sent and count as failed. It
 * keeps a test within its timeout even when every read waits out the forward timeout.
 */
const readsBudgetMs = 60_000;
/** Bound on waiting for a state to show: the replica caught up, the primary up again. */
const waitMs = 30_000;
const pollMs = 100;

const unavailable = netnsUnavailable();
const runs = needsTool('partition.test.ts', 'the multi-host partition test', unavailable);

// biome-ignore lint/complexity/noExcessiveLinesPerFunction: a describe() suite, not a function: its tests share one setup
describe.skipIf(!runs)('a primary cut off from the network', () => {
  const netns = useNetnsCluster(3, port, testTimeoutMs);
  const cut = { shard: 'shard1', member: 'shard1-primary' };
  const keys = Array.from({ length: 10 }, (_, i) => ({ key: keyOwnedBy(cut.shard, 3, `cut${i}-`), value: `value-${i}` }));
  const cutAddress = () => netns().cluster.address(cut.shard, 'primary');

  /** A request through `via`'s primary; a client-side failure (timeout, refused) becomes its message. */
  async function through(via: string, path: string): Promise<{ reply: Reply | undefined; failure: string | undefined; ms: number }> {
    const started = Date.now();
    try {
      const reply = await request(netns().cluster.url(via, 'primary', path), { signal: AbortSignal.timeout(clientTimeoutMs) });
      return { reply, failure: undefined, ms: Date.now() - started };
    } catch (err) {
      return { reply: undefined, failure: `client: ${(err as Error).message}`, ms: Date.now() - started };
    }
  }

  interface FailedRead {
    readonly read: number;
    readonly via: string;
    readonly key: string;
    readonly ms?: number;
    readonly outcome: unknown;
  }

  /**
   * `count` reads of `entries` round-robin, alternating between shard2's and shard3's primaries, each
   * expected to be 200 with the entry's value from shard1's `role`. Returns the reads that were not.
   */
  async function readAll(count: number, entries: typeof keys, role: 'primary' | 'replica'): Promise<FailedRead[]> {
    const deadline = Date.now() + readsBudgetMs;
    const failed: FailedRead[] = [];
    for (let i = 0; i < count; i++) {
      const via = i % 2 === 0 ? 'shard2' : 'shard3';
      const { key, value } = entries[i % entries.length]!;
      if (Date.now() > deadline) {
        failed.push({ read: i, via, key, outcome: `not sent: the ${readsBudgetMs} ms budget for ${count} reads is spent` });
        continue;
      }
      const { reply, failure, ms } = await through(via, dataPath('get', key));
      const got = reply && { status: reply.status, role: reply.headers.get('x-kv-role'), body: reply.text().slice(0, 200) };
      if (got?.status !== 200 || got.role !== role || got.body !== value) failed.push({ read: i, via, key, ms, outcome: got ?? failure });
    }
    return failed;
  }

  /** An error body's fields, or the body as text when it is not JSON, so a failure shows what came back. */
  function jsonOrText(reply: Reply): Record<string, unknown> {
    try {
      return reply.json() as Record<string, unknown>;
    } catch {
      return { body: reply.text().slice(0, 200) };
    }
  }

  async function peerState(via: string): Promise<unknown> {
    const status = (await request(netns().cluster.url(via, 'primary', '/status'), { signal: AbortSignal.timeout(clientTimeoutMs) })).json();
    return status.peers?.[cutAddress()];
  }

  it(
    'reads shard1 keys through the other primaries from shard1 primary while every link is up',
    async () => {
      for (const { key, value } of keys) {
        expect((await request(netns().cluster.url(cut.shard, 'primary', dataPath('set', key, value)))).status).toBe(200);
      }
      await waitConverged(netns().cluster, cut.shard, waitMs);
      expect(await readAll(keys.length, keys, 'primary')).toEqual([]);
    },
    testTimeoutMs,
  );

  it(
    'answers reads of shard1 keys from its replica while its primary is cut off',
    async () => {
      // The reads before the cut left keep-alive sockets to the primary open: the first read through each
      // forwarding primary goes out on one into the black hole, as it would under steady traffic.
      await netns().network.linkDown(cut.member);
      const failed = await readAll(cutReads, keys, 'replica');
      expect(failed, `${failed.length} of ${cutReads} reads were not 200 with the value from the replica`).toEqual([]);
    },
    testTimeoutMs,
  );

  it(
    'refuses writes of a shard1 key with 503 while its primary is cut off',
    async () => {
      const { key } = keys[0]!;
      const outcomes: Record<string, unknown>[] = [];
      for (const path of [dataPath('set', key, 'during-cut'), dataPath('delete', key), dataPath('set', key, 'during-cut')]) {
        const { reply, failure, ms } = await through('shard2', path);
        outcomes.push({ path, ms, ...(reply ? { status: reply.status, ...jsonOrText(reply) } : { status: failure }) });
      }
      // The first write may run into the black hole before the primary is known to be down: 504.
      const [first, ...rest] = outcomes;
      expect(first).toMatchObject(
        first!['status'] === 504 ? { error: 'shard_timeout', shard: cut.shard } : { status: 503, error: 'shard_unavailable', shard: cut.shard },
      );
      expect(rest).toMatchObject(rest.map(() => ({ status: 503, error: 'shard_unavailable', shard: cut.shard })));
    },
    testTimeoutMs,
  );

  it(
    "shows the cut-off primary as down in the other primaries' /status",
    async () => {
      for (const via of ['shard2', 'shard3']) {
        expect(await peerState(via), `${via} primary's peers[${cutAddress()}]`).toMatchObject({
          state: 'down',
          since: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d/),
          last_error: expect.any(String),
        });
      }
    },
    testTimeoutMs,
  );

  it(
    'finds the primary up again once its link is back, and reads shard1 keys from it',
    async () => {
      await netns().network.linkUp(cut.member);
      const deadline = Date.now() + waitMs;
      for (const via of ['shard2', 'shard3']) {
        for (;;) {
          const state: unknown = await peerState(via);
          if (state !== undefined && (state as { state?: string }).state === 'up') break;
          if (Date.now() > deadline)
            throw new Error(`${via} primary still shows ${cutAddress()} as ${JSON.stringify(state)} ${waitMs} ms after the link came up`);
          await new Promise((r) => setTimeout(r, pollMs));
        }
      }
      // keys[0] took the writes during the cut (a 504 leaves their fate open), so read the others.
      expect(await readAll(keys.length - 1, keys.slice(1), 'primary')).toEqual([]);
    },
    testTimeoutMs,
  );
});
