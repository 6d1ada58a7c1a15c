// A bound on log lines of one kind, so that a client cannot flood a node's log with its own faults.

import type { Log, LogFields } from './log.js';

/** Passes at most `linesPerSecond` lines a second to `log.warn`, then one line saying how many it dropped. */
export class LogLimiter {
  private windowStart = 0;
  private lines = 0;
  private dropped = 0;

  constructor(
    private readonly linesPerSecond: number,
    private readonly what: string,
  ) {}

  warn(log: Log, message: string, fields?: LogFields): void {
    const now = Date.now();
    if (now - this.windowStart >= 1_000) {
      this.windowStart = now;
      this.lines = 0;
    }
    if (this.lines < this.linesPerSecond) {
      this.lines++;
      log.warn(message, fields);
      return;
    }
    if (this.dropped++ === 0) {
      // Reported once the second is over; unref'd, so it never holds the process open.
      setTimeout(
        () => {
          log.warn(`${this.dropped} more ${this.what} lines in the last second were not logged`, { kind: this.what, dropped: this.dropped });
          this.dropped = 0;
        },
        1_000 - (now - this.windowStart),
      ).unref();
    }
  }
}
