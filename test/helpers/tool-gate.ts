// The gate of a test file that needs a system tool (chromium, ip netns as root, strace, etcd): where the
// tool is missing it prints why the file skips, except under CI=true, where .ci/run installs every tool
// and a missing one is a failure of its own.

import { it } from 'vitest';

/** Whether `file`'s tests run; `unavailable` says why they cannot, `what` names them in the CI failure. */
export function needsTool(file: string, what: string, unavailable: string | undefined): boolean {
  if (unavailable === undefined) return true;
  if (process.env['CI'] !== 'true') console.log(`${file}: skipped: ${unavailable}`);
  else {
    it('runs under CI=true', () => {
      throw new Error(`CI=true requires ${what}, but ${unavailable}`);
    });
  }
  return false;
}
