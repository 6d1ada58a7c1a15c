// Counting observations into fixed buckets on the paths a request takes. prom-client's own histogram
// builds a label key string and an object per observation; on the GET path, which costs a few dozen
// microseconds of CPU in all, that would be several percent. These count into a typed array instead,
// and node/metrics.ts turns them into Prometheus text when /metrics is read.

/**
 * Upper bounds, in seconds, for durations on loopback: a local GET answers in tens of microseconds, a
 * durable write in about a millisecond, a forwarded request or a sync under load in tens of them.
 */
export const durationBucketsS: readonly number[] = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Upper bounds for the number of writes one group commit makes durable. */
export const batchSizeBuckets: readonly number[] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

/** Counts of observations at or below each bound (not cumulative; exported cumulatively), their sum and number. */
export class Histogram {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(readonly bounds: readonly number[]) {
    // One more than the bounds: observations above the last bound (Prometheus's le="+Inf").
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
    this.count++;
  }

  /** Cumulative counts per bound, the last one for +Inf, as Prometheus's `_bucket` series are. */
  cumulative(): number[] {
    const out: number[] = [];
    let total = 0;
    for (const c of this.counts) {
      total += c;
      out.push(total);
    }
    return out;
  }
}
