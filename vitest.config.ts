import { BaseSequencer, type TestSpecification } from 'vitest/node';
import { defineConfig } from 'vitest/config';

/**
 * The files that take longest (a minute or so each, on this machine): they start first, so that no
 * worker is left running one of them alone at the end of the run. vitest orders by the durations it
 * cached in an earlier run, which a fresh clone (CI) does not have; it then goes by file size, and put
 * these last. Longest first.
 */
const longFiles = [
  'chaos',
  'chaos-coordinator',
  'resize-kill',
  'resize-shrink',
  'launch-resize',
  'resize-grow',
  'failover-resize',
  'client-resize',
  'cli-docs',
  'shorter-history',
  'launch-script',
  'replica-faults',
  'metrics',
  'readme',
  'cli-data',
  'hostile-clients',
];

class LongFilesFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const rank = (file: TestSpecification) => {
      const name = /([^/]+)\.test\.ts$/.exec(file.moduleId)?.[1] ?? '';
      const at = longFiles.indexOf(name);
      return at === -1 ? longFiles.length : at;
    };
    const sorted = await super.sort(files);
    return sorted
      .map((file, order) => ({ file, order }))
      .sort((a, b) => rank(a.file) - rank(b.file) || a.order - b.order)
      .map((x) => x.file);
  }
}

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Integration tests start real processes on a two-core machine. Much of a file's time is spent
    // waiting for bounds and timeouts that are the point of the test (a 20 s request bound, a node's
    // start), so three files at a time keep the cores busier than two, without more load than the tests
    // are written for (they wait for events, never for a fixed time).
    maxWorkers: 3,
    sequence: { sequencer: LongFilesFirst },
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ['default'],
  },
});
