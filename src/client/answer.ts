// What a node answered one exchange: the shape the transport produces and the error mapping and the
// client read. Its own module so that neither of those imports the other for it.

/** A node's answer: status and body, whatever the status. */
export interface Answer {
  readonly status: number;
  readonly body: Buffer;
  readonly node: string;
}
