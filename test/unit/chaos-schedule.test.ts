// The chaos run's fault schedule is a pure function of its options: a seed names one schedule.
import { describe, expect, it } from 'vitest';
import { faultSchedule, mulberry32 } from '../../src/harness/chaos-schedule.js';

const options = { seed: 27, faultWindowMs: 90_000, shards: ['shard1', 'shard2', 'shard3'], partitions: true };

describe('faultSchedule', () => {
  it('gives the same faults for the same seed, and other faults for another', () => {
    const once = faultSchedule(options);
    expect(faultSchedule(options)).toEqual(once);
    expect(faultSchedule({ ...options, seed: 28 })).not.toEqual(once);
    expect(once.length).toBeGreaterThan(10);
  });

  it('keeps every fault inside the window, in order, on a listed shard', () => {
    const faults = faultSchedule(options);
    for (const [i, f] of faults.entries()) {
      expect(f.id).toBe(i);
      expect(f.atMs).toBeLessThan(options.faultWindowMs);
      expect(options.shards).toContain(f.shard);
      if (i > 0) expect(f.atMs).toBeGreaterThanOrEqual(faults[i - 1]!.atMs);
    }
  });

  it('leaves partitions out where they cannot run', () => {
    expect(faultSchedule({ ...options, partitions: false }).some((f) => f.kind === 'partition')).toBe(false);
    expect(faultSchedule(options).some((f) => f.kind === 'partition')).toBe(true);
  });

  it("adds etcd's faults only with a coordinator, and cuts etcd off only where hosts can be cut off", () => {
    const kinds = (o: Parameters<typeof faultSchedule>[0]) => new Set(faultSchedule(o).map((f) => f.kind));
    expect([...kinds(options)].filter((k) => k.startsWith('etcd-'))).toEqual([]);
    expect(kinds({ ...options, coordinator: true }).has('etcd-restart')).toBe(true);
    expect(kinds({ ...options, coordinator: true }).has('etcd-wipe')).toBe(true);
    expect(kinds({ ...options, coordinator: true }).has('etcd-partition')).toBe(true);
    expect(kinds({ ...options, coordinator: true, partitions: false }).has('etcd-partition')).toBe(false);
    expect(kinds({ ...options, coordinator: true, partitions: false }).has('etcd-restart')).toBe(true);
  });

  it('draws the same numbers from the same seed', () => {
    const a = mulberry32(5);
    const b = mulberry32(5);
    const drawn = Array.from({ length: 5 }, () => a());
    expect(Array.from({ length: 5 }, () => b())).toEqual(drawn);
    for (const x of drawn) expect(x >= 0 && x < 1).toBe(true);
  });
});
