import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Integration tests start real processes on a two-core machine. Much of a file's time is spent
    // waiting for bounds and timeouts that are the point of the test (a 20 s request bound, a node's
    // start), so three files at a time keep the cores busier than two, without more load than the tests
    // are written for (they wait for events, never for a fixed time).
    maxWorkers: 3,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ['default'],
  },
});
