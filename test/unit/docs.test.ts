// docs/api.md lists every error code a client can get: each code the source can answer with appears
// there in backticks, so a new error cannot ship undocumented.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const api = readFileSync(new URL('../../docs/api.md', import.meta.url), 'utf8');
const source = (path: string) => readFileSync(new URL(`../../src/${path}`, import.meta.url), 'utf8');

/** Codes of the KvError classes, of the parser-level answers and of the JSON bodies written by hand. */
function errorCodes(): string[] {
  const codes = new Set<string>();
  for (const m of source('core/errors.ts').matchAll(/super\(\s*'([a-z_]+)'/g)) codes.add(m[1]!);
  for (const m of source('server/error-reply.ts').matchAll(/\[\d{3}, '([a-z_]+)'/g)) codes.add(m[1]!);
  for (const file of ['server/error-reply.ts', 'server/http-api.ts']) {
    for (const m of source(file).matchAll(/error: '([a-z_]+)'/g)) codes.add(m[1]!);
  }
  return [...codes].sort();
}

describe('docs/api.md', () => {
  it('finds the codes it checks', () => {
    expect(errorCodes()).toEqual(expect.arrayContaining(['bad_request', 'not_found', 'shard_connection_lost', 'headers_too_large', 'starting', 'internal']));
  });

  it.each(errorCodes())('documents the error code %s', (code) => {
    expect(api).toContain(`\`${code}\``);
  });
});
