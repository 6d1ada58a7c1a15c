// What the HTTP surface counts for /metrics: every request's duration by route, status class and the
// node's role, and the error codes it answered. Labels come from fixed sets (route names, not paths), so
// a client sending random paths cannot make the number of series grow.

import { durationBucketsS, Histogram } from '../core/histogram.js';

/** Route names, the `route` label: the data routes first, by their path, then the rest by kind. */
export const routeNames = ['get', 'set', 'delete', 'health', 'status', 'cluster', 'metrics', 'dashboard', 'internal', 'other'] as const;
export type RouteName = (typeof routeNames)[number];

/** The `role` label: what the node served when the request was answered. */
export const roleNames = ['primary', 'replica', 'drain'] as const;

/** The `status_class` label: 1xx to 5xx. */
export const statusClasses = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const;

const routeIndex = new Map<string, number>(routeNames.map((name, i) => [name, i]));

/** The route name of a path. */
export function routeOfPath(path: string): RouteName {
  if (path === '/get' || path === '/set' || path === '/delete') return path.slice(1) as RouteName;
  if (path === '/health' || path === '/status' || path === '/cluster' || path === '/metrics') return path.slice(1) as RouteName;
  if (path === '/dashboard' || path.startsWith('/dashboard/')) return 'dashboard';
  if (path.startsWith('/internal/')) return 'internal';
  return 'other';
}

export interface RequestCell {
  readonly route: RouteName;
  readonly statusClass: (typeof statusClasses)[number];
  readonly role: (typeof roleNames)[number];
  readonly durations: Histogram;
}

export class RequestStats {
  /** Indexed by route, status class and role; a cell exists once a request of its kind was answered. */
  private readonly cells: (Histogram | undefined)[] = new Array(routeNames.length * statusClasses.length * roleNames.length);
  private role = 0;
  /** Error answers by their `error` code (a fixed set: core/errors.ts). */
  readonly errors = new Map<string, number>();

  /** The role whose label requests get from now on (a failover changes it). */
  setRole(name: string): void {
    const i = roleNames.indexOf(name as (typeof roleNames)[number]);
    this.role = Math.max(i, 0);
  }

  /** Index of a route name for observe(); data routes use their path without the slash. */
  static route(name: RouteName): number {
    return routeIndex.get(name)!;
  }

  /** One answered request: `route` from RequestStats.route(), its HTTP status and duration in seconds. */
  observe(route: number, status: number, seconds: number): void {
    let cls = ((status / 100) | 0) - 1;
    if (cls < 0 || cls > 4) cls = 4;
    const i = (route * statusClasses.length + cls) * roleNames.length + this.role;
    let cell = this.cells[i];
    if (cell === undefined) {
      cell = new Histogram(durationBucketsS);
      this.cells[i] = cell;
    }
    cell.observe(seconds);
  }

  /** One answered request that started at `started` (a performance.now() reading). */
  observeSince(route: number, status: number, started: number): void {
    this.observe(route, status, (performance.now() - started) / 1000);
  }

  /** One error answer, by its code. */
  countError(code: string): void {
    this.errors.set(code, (this.errors.get(code) ?? 0) + 1);
  }

  /** Requests answered and the sum of their durations, over every cell (for /status and the dashboard). */
  totals(): { served: number; served_seconds: number } {
    let served = 0;
    let seconds = 0;
    for (const cell of this.cells) {
      if (cell === undefined) continue;
      served += cell.count;
      seconds += cell.sum;
    }
    return { served, served_seconds: seconds };
  }

  /** Every cell that has counted a request, with its labels. */
  *entries(): Generator<RequestCell> {
    for (let i = 0; i < this.cells.length; i++) {
      const durations = this.cells[i];
      if (durations === undefined) continue;
      const role = i % roleNames.length;
      const cls = ((i - role) / roleNames.length) % statusClasses.length;
      const route = Math.floor(i / (roleNames.length * statusClasses.length));
      yield { route: routeNames[route]!, statusClass: statusClasses[cls]!, role: roleNames[role]!, durations };
    }
  }
}
