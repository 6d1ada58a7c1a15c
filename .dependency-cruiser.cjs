// kvshard's architecture, checked on the TypeScript sources in src/, type-only imports included: a
// cycle through `import type` is a cycle of concepts all the same, though compilation erases it.
// dependency-cruiser reads the sources with swc (@swc/core), since TypeScript 7 has no JavaScript API for
// its TypeScript mode; imports written `./x.js` resolve to `./x.ts` as the compiler resolves them. One
// form swc does not report is a type alias of an import type (`type X = import('./x.js').X`): write
// `import type` lines instead.
//
// The shipped code is eight layers, one folder each, lowest first:
//
//   core < storage < peer < cluster < replication < server < node < cli
//
// A module imports only from its own layer and the layers below it, never upward and never in a circle.
// client/ (kvshard/client, the routing client) stands beside them: it uses only core/'s slot hashing,
// limits and cancellable sleep, so an application that imports it loads nothing of the server; only
// cli/ imports it.
// Two folders are not shipped (package.json `files` leaves them out): harness/ (the local cluster of real
// processes that the tests and the benchmark run on) and bench/ (the benchmark).

/** The shipped layers, lowest first. */
const layers = ['core', 'storage', 'peer', 'cluster', 'replication', 'server', 'node', 'cli'];

/** The rule for one layer: it may import from its own folder and those listed before it, nothing else in src/. */
function layer(name, comment) {
  const allowed = layers.slice(0, layers.indexOf(name) + 1);
  if (name === 'cli') allowed.push('client');
  return {
    name: `${name}-imports-only-${allowed.join('-')}`,
    severity: 'error',
    comment,
    from: { path: `^src/${name}/` },
    to: { path: '^src/', pathNot: `^src/(${allowed.join('|')})/` },
  };
}

module.exports = {
  forbidden: [
    layer(
      'core',
      'core/ is pure: limits, errors, slot hashing, configuration parsing, wire names, the parsing of ' +
        'data-route requests and HTTP replies, and the backoff and cancellable sleep every retry loop uses. ' +
        'It does no I/O of its own and imports nothing else in kvshard.',
    ),
    layer(
      'storage',
      'storage/ owns the data on disk: the LMDB store split by concern, the replication log, the read cache ' +
        'and the data dir lock. It may use core/.',
    ),
    layer(
      'peer',
      'peer/ holds the node-to-node HTTP clients: the connection pool, peer health, the internal client and ' +
        'the forwarder of data requests. It may use core/ and storage/.',
    ),
    layer(
      'cluster',
      'cluster/ is what the shards agree on: the node\'s view of the layout, layout announcements, the ' +
        'start-up layout decision and the migration of slots between ' +
        'shards. It may use core/, storage/ and peer/.',
    ),
    layer(
      'replication',
      'replication/ copies a primary to its replica: the wire protocol, the sender, the receiver and ' +
        "primary recovery. It may use core/, storage/, peer/ and cluster/ (the node's view of the cluster).",
    ),
    layer(
      'server',
      'server/ is the HTTP surface: it parses requests, applies the limits and turns errors into replies, ' +
        'and hands data requests to the role the node gives it. It may use every layer below it, never node/.',
    ),
    layer(
      'node',
      'node/ wires one kvshard process: it opens the store, chooses the role (primary, replica, drain) and ' +
        'mounts the routes of the layers below on the server.',
    ),
    layer(
      'cli',
      'cli/ is the command line and the admin commands (status, verify): the one place that reads argv and ' +
        'the environment. Nothing imports it.',
    ),
    {
      name: 'client-imports-only-slots-limits-and-sleep',
      severity: 'error',
      comment:
        "client/ is kvshard/client: it may use its own modules and core/'s slot hashing, limits and sleep (backoff.js), nothing else of kvshard.",
      from: { path: '^src/client/' },
      to: { path: '^src/', pathNot: '^src/(client/|core/slots\\.ts$|core/limits\\.ts$|core/backoff\\.ts$)' },
    },
    {
      name: 'no-circular',
      severity: 'error',
      comment:
        'No import cycles, within a layer either: a cycle means two modules are one concept split in two, or ' +
        'that a shared piece belongs in a lower module both can import.',
      from: {},
      to: { circular: true },
    },
    {
      name: 'harness-is-not-shipped',
      severity: 'error',
      comment:
        'harness/ starts local clusters for the tests and the benchmark and is not in the package: only ' +
        'bench/ (and the tests) may import it.',
      from: { pathNot: '^src/(harness|bench)/' },
      to: { path: '^src/harness/' },
    },
    {
      name: 'bench-is-not-imported',
      severity: 'error',
      comment: 'bench/ is the benchmark program, not a library: only its own modules import each other.',
      from: { pathNot: '^src/bench/' },
      to: { path: '^src/bench/' },
    },
    {
      name: 'every-module-in-a-folder',
      severity: 'error',
      comment:
        'Every module lives in a layer folder, or in harness/ or bench/, so its folder says what it may import.',
      from: { path: '^src/', pathNot: `^src/(${[...layers, 'client', 'harness', 'bench'].join('|')})/` },
      to: {},
    },
    {
      name: 'shipped-code-uses-only-dependencies',
      severity: 'error',
      comment:
        'The package installs only `dependencies`: a shipped module that imports a devDependency (autocannon, ' +
        'vitest) breaks once published.',
      from: { path: `^src/(${[...layers, 'client'].join('|')})/` },
      to: { dependencyTypes: ['npm-dev', 'npm-optional', 'npm-peer', 'npm-no-pkg', 'npm-unknown'] },
    },
    {
      name: 'src-imports-only-src-and-packages',
      severity: 'error',
      comment:
        'A module in src/ imports only src/ modules, packages and node builtins: never the build (dist/), which ' +
        'the compiler would accept through its .d.ts files, nor the tests.',
      from: { path: '^src/' },
      to: { pathNot: ['^src/', '(^|/)node_modules/'], dependencyTypesNot: ['core'] },
    },
    {
      name: 'no-unresolvable',
      severity: 'error',
      comment: 'Every import resolves to a file or a package: a stale path after a move fails here, not at run time.',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    moduleSystems: ['es6'],
    parser: 'swc',
    tsPreCompilationDeps: true,
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'node', 'default'],
      mainFields: ['module', 'main'],
    },
  },
};
