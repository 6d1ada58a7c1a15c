// Checks the file-size bound of the house style, run by `npm test` (pretest): every .ts file under the
// given directory has at most the given number of lines. A file past it is split by noun, one concept per
// file. Lines are counted as `wc -l` counts them, so the number in a failure matches what a reader sees.
//
//   node dist/harness/file-lines.js DIR LINES_MAX

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return tsFiles(path);
    return entry.isFile() && entry.name.endsWith('.ts') ? [path] : [];
  });
}

function lineCount(path: string): number {
  return readFileSync(path, 'utf8').split('\n').length - 1;
}

const [dir, max] = process.argv.slice(2);
const linesMax = Number(max);
if (dir === undefined || !Number.isInteger(linesMax) || linesMax < 1) {
  console.error('usage: node dist/harness/file-lines.js DIR LINES_MAX');
  process.exit(2);
}
const over = tsFiles(dir)
  .map((path) => ({ path, lines: lineCount(path) }))
  .filter((file) => file.lines > linesMax);
for (const file of over) console.error(`${file.path}: ${file.lines} lines, more than ${linesMax}: split it by concept`);
process.exit(over.length === 0 ? 0 : 1);
