// The import rules (.dependency-cruiser.cjs, run on src/ by `npm test`) see what compilation erases: a
// cycle made only of `import type` lines, inside one folder, is refused like any other, and so is a
// type-only import that goes up the layers. Each case is a small source tree in a temporary directory,
// checked with the repository's own configuration.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

const repo = resolve(import.meta.dirname, '../..');
const exec = promisify(execFile);
const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** Runs the import check on a tree of `files` (path under src/ -> source); resolves with its exit code and output. */
async function check(files: Record<string, string>): Promise<{ code: number; output: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'kvshard-imports-'));
  dirs.push(dir);
  for (const [path, source] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, 'src', path)), { recursive: true });
    writeFileSync(join(dir, 'src', path), source);
  }
  const bin = resolve(repo, 'node_modules/.bin/depcruise');
  return exec(bin, ['--config', resolve(repo, '.dependency-cruiser.cjs'), '--output-type', 'err', 'src'], { cwd: dir, timeout: 60_000 }).then(
    (r) => ({ code: 0, output: r.stdout + r.stderr }),
    (err: { code?: number; stdout: string; stderr: string }) => ({ code: err.code ?? -1, output: err.stdout + err.stderr }),
  );
}

describe('the import check', () => {
  it('passes a tree without cycles', async () => {
    const result = await check({
      'client/answer.ts': 'export interface Answer { readonly status: number }\n',
      'client/errors.ts': "import type { Answer } from './answer.js';\nexport const f = (a: Answer) => a.status;\n",
      'client/transport.ts': "import type { Answer } from './answer.js';\nimport { f } from './errors.js';\nexport const g = (a: Answer) => f(a);\n",
    });
    expect(result.code, result.output).toBe(0);
  });

  it('refuses a cycle of type-only imports inside one folder', async () => {
    const result = await check({
      'client/errors.ts': "import type { Answer } from './transport.js';\nexport const f = (a: Answer) => a.status;\n",
      'client/transport.ts': "import { f } from './errors.js';\nexport interface Answer { readonly status: number }\nexport const g = (a: Answer) => f(a);\n",
    });
    expect(result.code).not.toBe(0);
    expect(result.output).toMatch(/no-circular: src\/client\/(errors|transport)\.ts/);
  });

  it('refuses an import of the build or of the tests from src/', async () => {
    const result = await check({
      'core/a.ts': "import type { KvNode } from '../../dist/node/node.js';\nexport type A = KvNode;\n",
      'core/b.ts': "import { x } from '../../test/helpers/x.js';\nexport const b = x;\n",
    });
    expect(result.code).not.toBe(0);
    expect(result.output).toMatch(/src-imports-only-src-and-packages: src\/core\/a\.ts/);
    expect(result.output).toMatch(/src-imports-only-src-and-packages: src\/core\/b\.ts/);
  });

  it('refuses a cycle between folders and a type-only import up the layers', async () => {
    const result = await check({
      'core/a.ts': "import type { B } from '../storage/b.js';\nexport type A = B | 1;\n",
      'storage/b.ts': "import type { A } from '../core/a.js';\nexport type B = A | 2;\n",
    });
    expect(result.code).not.toBe(0);
    expect(result.output).toMatch(/no-circular/);
    expect(result.output).toMatch(/core-imports-only-core: src\/core\/a\.ts → src\/storage\/b\.ts/);
  });
});
