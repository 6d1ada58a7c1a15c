// Helpers for the tests that run a document's examples as written (README.md, docs/cli.md): its sh
// lines, each line's command and comment, and the repository config's addresses mapped to a test
// cluster's.

import { resolve } from 'node:path';
import { loadConfig } from '../../src/core/config.js';
import type { Cluster } from './cluster.js';

/** Every line of the ```sh blocks of `text`, without blank lines. */
export function shellBlockLines(text: string): string[] {
  return [...text.matchAll(/```sh\n([\s\S]*?)```/g)].flatMap((block) => block[1]!.split('\n').filter((l) => l.trim() !== ''));
}

/** A documented line split into its command and the comment after `  # `. */
export function splitComment(line: string): { command: string; comment: string } {
  const at = line.search(/\s{2,}#\s/);
  return at === -1
    ? { command: line.trim(), comment: '' }
    : {
        command: line.slice(0, at).trim(),
        comment: line
          .slice(at)
          .replace(/^\s+#\s/, '')
          .trim(),
      };
}

/** The addresses of `repo`'s sharding.toml, each mapped to `cluster`'s member at the same place. */
export function repoAddresses(repo: string, cluster: Cluster): Map<string, string> {
  const addresses = new Map<string, string>();
  loadConfig(resolve(repo, 'sharding.toml')).shards.forEach((shard, i) => {
    addresses.set(shard.address, cluster.shards[i]!.address);
    addresses.set(shard.replica, cluster.shards[i]!.replica);
  });
  return addresses;
}

/** `text` with the repository config's addresses (127.0.0.1:80xx) replaced by the test cluster's. */
export function mapAddresses(text: string, addresses: ReadonlyMap<string, string>): string {
  return text.replace(/127\.0\.0\.1:80\d\d/g, (address) => addresses.get(address) ?? address);
}

/**
 * A kvshard command line reduced to what it does, for telling whether two documents run the same
 * command: `npx kvshard` and `node dist/cli/cli.js` are one program (package.json's bin), and
 * `--config sharding.toml` is the default.
 */
export function cliCommandKey(command: string): string {
  return command
    .replace(/^(npx kvshard|node dist\/cli\/cli\.js)\b/, 'kvshard')
    .replace(/ --config sharding\.toml\b/, '')
    .replace(/\s+/g, ' ')
    .trim();
}
