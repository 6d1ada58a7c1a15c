// What every HTTP handler of kvshard shares, whichever layer mounts it (the server, layout announcements,
// the replication receiver): the request type after a body parser ran, and the JSON answer.
//
// Handlers answer with node's own response methods, never express's res.json(): an express app swaps the
// prototype of every request and response it handles, and once node's http code has seen those objects
// the data path slows for the life of the process (see src/server/http-api.ts).

import type { IncomingMessage, ServerResponse } from 'node:http';

/** Node's request after one of express's body parsers (express.raw, express.json) has set `body`. */
export type BodyRequest = IncomingMessage & { body?: unknown };

/** A JSON answer, written with node's own methods. */
export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
