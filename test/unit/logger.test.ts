// The node's log file rolls by size and keeps a bounded number of files, so a node left running does
// not fill the disk; every line is JSON with pino's fields and the context the node sets.

import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { createLogger } from '../../src/node/logger.js';

const dir = mkdtempSync(join(tmpdir(), 'kvshard-logger-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it('rolls the file at its size bound and keeps at most the declared number of files', async () => {
  const fileBytesMax = 64 * 1024;
  const filesKept = 3;
  const logger = await createLogger({
    level: 'info',
    format: 'json',
    to: 'file',
    file: join(dir, 'logs', 'shard1-a'),
    bindings: { shard: 'shard1', member: 'a' },
    fileBytesMax,
    filesKept,
  });
  logger.context.role = 'primary';
  logger.context.epoch = 3;
  const line = 'x'.repeat(200);
  // About 20 times the bound, a few lines at a time as a node logs: without rolling and removal the
  // file would hold it all. (A file rolls after a write that takes it past the bound has drained, so
  // lines logged in one burst end up in one file.)
  for (let i = 0; i < 5_000; i++) {
    logger.log.info(`${i} ${line}`, { token: 'secret-token-value', n: i });
    if (i % 20 === 19) await new Promise((r) => setTimeout(r, 1));
  }
  await logger.close();
  // pino-roll removes old files asynchronously after a roll.
  const deadline = Date.now() + 10_000;
  let files = readdirSync(join(dir, 'logs'));
  while (files.length > filesKept && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    files = readdirSync(join(dir, 'logs'));
  }
  expect(files.length).toBeLessThanOrEqual(filesKept);
  expect(files.every((f) => /^shard1-a\.\d+\.log$/.test(f))).toBe(true);
  let total = 0;
  // A file rolls once a write takes it past the bound, and one write carries every line buffered while
  // the one before it was under way: on a busy machine that is more than one burst. The slack allows
  // a bound's worth; the 1.5 MB logged could not fit in the files kept without rolling and removal.
  const slack = fileBytesMax;
  for (const f of files) {
    const size = statSync(join(dir, 'logs', f)).size;
    expect(size).toBeLessThan(fileBytesMax + slack);
    total += size;
  }
  expect(total).toBeLessThan(filesKept * (fileBytesMax + slack));
  // The last line written is the last of the newest file that has any (a roll may have just begun one).
  const byNumber = files.sort((a, b) => Number(b.split('.')[1]) - Number(a.split('.')[1]));
  const texts = byNumber.map((f) => readFileSync(join(dir, 'logs', f), 'utf8').trim()).filter((t) => t !== '');
  const last = texts[0]!.split('\n').at(-1)!;
  const parsed = JSON.parse(last) as Record<string, unknown>;
  expect(parsed).toMatchObject({ level: 30, msg: `4999 ${line}`, shard: 'shard1', member: 'a', role: 'primary', epoch: 3, n: 4999, token: '[redacted]' });
  expect(typeof parsed['time']).toBe('string');
});
