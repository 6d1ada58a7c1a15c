// Whether this member's store serves as its shard's primary, and at which epoch: the one owner of that
// fact in the store. A write reads it inside its own transaction, and promote(), demote() and raise()
// change it inside theirs, so LMDB's one-at-a-time transactions order them: a write queued before a
// demotion commits as the primary's, logged; one queued after it is refused and stores nothing. Nothing
// reads it before queuing and acts on it later.

import { NotServingPrimaryError } from '../core/errors.js';
import type { ReplicationLog } from './replication-log.js';

/** What the store serves as: a primary at an epoch (a drain's epoch is its shard's last), or a replica. */
export type Serving = { readonly role: 'primary'; readonly epoch: number } | { readonly role: 'replica' };

export class Standing {
  private serving: Serving;

  constructor(
    initial: Serving,
    /** The replication log: a primary's writes go to it, a replica's store keeps it only for a rollback. */
    private readonly logDb: ReplicationLog,
  ) {
    this.serving = initial;
  }

  /** What the store serves as now (as of the last transaction that changed it). */
  get now(): Serving {
    return this.serving;
  }

  /** The replication log while the store serves as a primary; undefined while it serves as a replica. */
  get log(): ReplicationLog | undefined {
    return this.serving.role === 'primary' ? this.logDb : undefined;
  }

  /**
   * Inside a write transaction: the log for `what`, which only a primary at `epoch` takes (any epoch when
   * undefined), or a refusal naming what the store serves as now. The caller's transaction then writes nothing.
   */
  primaryLogInTransaction(what: string, epoch: number | undefined): ReplicationLog | NotServingPrimaryError {
    const serving = this.serving;
    if (serving.role !== 'primary') return new NotServingPrimaryError(what, 'its store serves as a replica (a demotion has begun)');
    if (epoch !== undefined && serving.epoch !== epoch) {
      return new NotServingPrimaryError(what, `it was admitted at epoch ${epoch}, and the store serves as primary at epoch ${serving.epoch}`, {
        epoch: serving.epoch,
      });
    }
    return this.logDb;
  }

  /** Inside the transaction that makes it so (promote, demote, raise), or at start-up before any write. */
  setInTransaction(serving: Serving): void {
    this.serving = serving;
  }
}
