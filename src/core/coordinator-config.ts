// The optional `[coordinator]` table of sharding.toml: etcd decides who is each shard's primary (leases
// instead of operator-driven failover). Validated with the rest of the config, each problem named by
// its TOML path.

import { etcdEndpointsMax, leaseTtlMsDefault, leaseTtlMsMax, leaseTtlMsMin, maxLagOnFailoverDefault, maxLagOnFailoverMax } from './limits.js';

export interface CoordinatorSettings {
  /** etcd client endpoints, `host:port`, tried in turn. */
  readonly etcd: readonly string[];
  /** How long a silent primary keeps its shard: a whole number of seconds, in milliseconds. */
  readonly leaseTtlMs: number;
  /** A replica further behind than this many entries at its last contact with its primary does not campaign. */
  readonly maxLagOnFailover: number;
  /** The etcd key prefix of this cluster's keys (two clusters sharing one etcd need two prefixes). */
  readonly prefix: string;
}

const coordinatorKeys = new Set(['etcd', 'lease_ttl_ms', 'max_lag_on_failover', 'prefix']);
const prefixPattern = /^\/[A-Za-z0-9_./-]{0,127}$/;

type Problem = (path: string, message: string) => void;

export function validateCoordinator(raw: unknown, problem: Problem, isAddress: (text: string) => boolean): CoordinatorSettings | undefined {
  if (raw === undefined) return undefined;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    problem('coordinator', 'must be a table ([coordinator])');
    return undefined;
  }
  const table = raw as Record<string, unknown>;
  for (const key of Object.keys(table)) {
    if (!coordinatorKeys.has(key)) problem(`coordinator.${key}`, `unknown key (allowed: ${[...coordinatorKeys].join(', ')})`);
  }
  const etcd = table['etcd'];
  if (!Array.isArray(etcd) || etcd.length === 0 || etcd.length > etcdEndpointsMax) {
    problem('coordinator.etcd', `must list 1 to ${etcdEndpointsMax} etcd client endpoints as "host:port" strings`);
  } else {
    etcd.forEach((e, i) => {
      if (typeof e !== 'string' || !isAddress(e)) problem(`coordinator.etcd[${i}]`, `must be "host:port", got ${JSON.stringify(e)}`);
    });
  }
  const ttl = table['lease_ttl_ms'] ?? leaseTtlMsDefault;
  if (!Number.isSafeInteger(ttl) || (ttl as number) < leaseTtlMsMin || (ttl as number) > leaseTtlMsMax || (ttl as number) % 1000 !== 0) {
    problem(
      'coordinator.lease_ttl_ms',
      `must be whole seconds from ${leaseTtlMsMin} to ${leaseTtlMsMax} (etcd grants leases in seconds, 2 s at least), got ${JSON.stringify(ttl)}`,
    );
  }
  const lag = table['max_lag_on_failover'] ?? maxLagOnFailoverDefault;
  if (!Number.isSafeInteger(lag) || (lag as number) < 0 || (lag as number) > maxLagOnFailoverMax) {
    problem('coordinator.max_lag_on_failover', `must be an integer from 0 to ${maxLagOnFailoverMax}, got ${JSON.stringify(lag)}`);
  }
  const prefix = table['prefix'] ?? '/kvshard';
  if (typeof prefix !== 'string' || !prefixPattern.test(prefix) || prefix.endsWith('/')) {
    problem('coordinator.prefix', `must start with "/", not end with one, and hold only letters, digits and _ . / -, got ${JSON.stringify(prefix)}`);
  }
  return Object.freeze({
    etcd: Object.freeze(Array.isArray(etcd) ? etcd.map(String) : []),
    leaseTtlMs: ttl as number,
    maxLagOnFailover: lag as number,
    prefix: prefix as string,
  });
}
