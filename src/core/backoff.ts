// The one way kvshard waits: a sleep that ends early when its owner closes, and capped exponential
// backoff built on it. Every retry loop (replication, migration, layout announcements, primary recovery)
// backs off between its bounds from limits.ts, and every wait ends at once on close, so shutdown never
// waits out a timer.

/** Resolves after `ms`, or at once when `signal` aborts (it never rejects). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** The delays of a retry loop: `firstMs`, doubling after each failure up to `maxMs`, back to `firstMs` on success. */
export class Backoff {
  private delayMs: number;

  constructor(
    private readonly firstMs: number,
    private readonly maxMs: number,
    /** Ends a wait early: the owner is closing. */
    private readonly signal: AbortSignal,
  ) {
    this.delayMs = firstMs;
  }

  /** How long the next wait sleeps. */
  get nextMs(): number {
    return this.delayMs;
  }

  /** Sleeps the current delay (less when the owner closes meanwhile), then doubles it up to the cap. */
  wait(): Promise<void> {
    const ms = this.delayMs;
    this.delayMs = Math.min(ms * 2, this.maxMs);
    return sleep(ms, this.signal);
  }

  /** An attempt succeeded: the next failure waits `firstMs` again. */
  reset(): void {
    this.delayMs = this.firstMs;
  }
}

/**
 * Wakes a waiting loop early: the replication sender sleeps on it between rounds, and a commit wakes it
 * at once instead of after the full interval. Many notifies before a wait collapse into one.
 */
export class Wakeup {
  private pending = false;
  private waiting: AbortController | undefined;

  notify(): void {
    if (this.waiting) {
      this.waiting.abort();
      this.waiting = undefined;
    } else {
      this.pending = true;
    }
  }

  wait(timeoutMs: number): Promise<void> {
    if (this.pending) {
      this.pending = false;
      return Promise.resolve();
    }
    const waiting = new AbortController();
    this.waiting = waiting;
    return sleep(timeoutMs, waiting.signal).finally(() => {
      if (this.waiting === waiting) this.waiting = undefined;
    });
  }
}
