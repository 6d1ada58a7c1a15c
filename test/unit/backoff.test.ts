// The delays of a retry loop (Backoff) and a sleep that ends when its owner closes.
import { describe, expect, it } from 'vitest';
import { Backoff, sleep, Wakeup } from '../../src/core/backoff.js';

/** The delays a loop waits after each failure among `steps`; the signal is aborted, so no wait takes time. */
async function delays(firstMs: number, maxMs: number, steps: readonly ('fail' | 'succeed')[]): Promise<number[]> {
  const closed = AbortSignal.abort();
  const backoff = new Backoff(firstMs, maxMs, closed);
  const seen: number[] = [];
  for (const step of steps) {
    if (step === 'succeed') {
      backoff.reset();
      continue;
    }
    seen.push(backoff.nextMs);
    await backoff.wait();
  }
  return seen;
}

describe('Backoff', () => {
  it.each([
    { name: 'doubles from the first delay', bounds: [50, 2_000], steps: ['fail', 'fail', 'fail'], delays: [50, 100, 200] },
    { name: 'stops at the cap', bounds: [50, 300], steps: ['fail', 'fail', 'fail', 'fail', 'fail'], delays: [50, 100, 200, 300, 300] },
    { name: 'starts over after a success', bounds: [50, 2_000], steps: ['fail', 'fail', 'succeed', 'fail'], delays: [50, 100, 50] },
    { name: 'a cap below the first delay', bounds: [500, 100], steps: ['fail', 'fail'], delays: [500, 100] },
  ] as const)('$name', async ({ bounds, steps, delays: expected }) => {
    expect(await delays(bounds[0], bounds[1], steps)).toEqual(expected);
  });
});

describe('sleep', () => {
  it('ends at once when its owner closes', async () => {
    const owner = new AbortController();
    const started = Date.now();
    const waiting = sleep(60_000, owner.signal);
    owner.abort();
    await waiting;
    expect(Date.now() - started).toBeLessThan(1_000);
  });

  it('a notify ends a wait, and one before the wait makes the next wait end at once', async () => {
    const wakeup = new Wakeup();
    const started = Date.now();
    const waiting = wakeup.wait(60_000);
    wakeup.notify();
    await waiting;
    wakeup.notify();
    wakeup.notify();
    await wakeup.wait(60_000);
    expect(Date.now() - started).toBeLessThan(1_000);
  });
});
