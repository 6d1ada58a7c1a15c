// Bounds on answers written but not yet read by their clients (see replyBytesUnsentMax in limits.ts).

import type { ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { OverloadedError } from '../core/errors.js';
import { connectionUnreadBytesMax, largeReplyBytesMin } from '../core/limits.js';

const queuedReplyBytes = Symbol('kvshard.queuedReplyBytes');
/** A connection with the bytes of its answers that wait behind an earlier answer the client has not read. */
export type ReplySocket = Duplex & { [queuedReplyBytes]: number };

/** Gives every new connection the counter at once, so all sockets keep one shape for V8. */
export function trackReplies(socket: ReplySocket): void {
  socket[queuedReplyBytes] = 0;
}

export class ReplyBudget {
  private held = 0;
  private highest = 0;
  private refusals = 0;
  private unreadRefusals = 0;

  constructor(readonly bytesMax: number) {}

  /**
   * The refusal for a request on a connection whose client has left more than connectionUnreadBytesMax
   * of answers unread, or undefined. One property read: the GET path pays nothing more.
   */
  unreadRefusal(socket: ReplySocket): OverloadedError | undefined {
    if (socket[queuedReplyBytes] <= connectionUnreadBytesMax) return undefined;
    this.unreadRefusals++;
    return new OverloadedError(`more than ${connectionUnreadBytesMax} bytes of answers on this connection are unread; read them before sending more`, true);
  }

  /**
   * Counts an answer of `bytes` until it is written out or its connection closes: against the process's
   * budget when it is large, and against its connection when it waits behind an earlier answer. Throws
   * OverloadedError when a large answer does not fit the budget.
   */
  admit(res: ServerResponse, bytes: number): void {
    // A response without a socket yet waits in node's queue behind an answer the client has not read.
    const queued = res.socket === null;
    if (bytes < largeReplyBytesMin && !queued) return;
    if (bytes >= largeReplyBytesMin) {
      if (this.held + bytes > this.bytesMax) {
        this.refusals++;
        throw new OverloadedError(`this node already holds ${this.bytesMax} bytes of large answers not yet read; retry shortly`);
      }
      this.held += bytes;
      if (this.held > this.highest) this.highest = this.held;
      res.once('close', () => {
        this.held -= bytes;
      });
    }
    if (queued) {
      const socket = res.req.socket as unknown as ReplySocket;
      socket[queuedReplyBytes] += bytes;
      res.once('close', () => {
        socket[queuedReplyBytes] -= bytes;
      });
    }
  }

  status(): Record<string, number> {
    return {
      reply_bytes_unsent: this.held,
      reply_bytes_unsent_peak: this.highest,
      reply_bytes_max: this.bytesMax,
      refused_replies: this.refusals,
      refused_unread: this.unreadRefusals,
    };
  }
}
