// The member's role at run time: the state cluster/member-role.ts decides, and the one queue its effects
// are carried out in. An event is decided at once (so a write admitted in the same turn already sees
// the new state), and its effects run after every earlier event's, one at a time, in the order step
// returned them. Nothing else changes the member's role.

import type { Log } from '../core/log.js';
import { type MemberEffect, type MemberEvent, type MemberState, step, type Transition } from '../cluster/member-role.js';

/** Carries out one effect (node.ts). */
export type CarryOut = (effect: MemberEffect) => Promise<void>;

export class Member {
  private current: MemberState;
  private queue: Promise<void> = Promise.resolve();

  constructor(
    started: Transition,
    private readonly carryOut: CarryOut,
    private readonly log: Log,
  ) {
    this.current = started.state;
  }

  /** What the member knows now, as of the last event decided (its effects may still be under way). */
  get state(): MemberState {
    return this.current;
  }

  /**
   * Decides `event` now and queues its effects. Resolves once they are carried out; rejects with the
   * first one that failed (the effects after it are skipped, and later events still run).
   */
  dispatch(event: MemberEvent): Promise<void> {
    const { state, effects } = step(this.current, event);
    this.current = state;
    return this.run(effects);
  }

  /** Queues effects that come from outside a step: the start's, and storing the epochs of other shards. */
  run(effects: readonly MemberEffect[]): Promise<void> {
    if (effects.length === 0) return this.queue;
    const carried = this.queue.then(async () => {
      for (const effect of effects) await this.carryOut(effect);
    });
    this.queue = carried.catch((err: unknown) => this.log.error(`role change failed: ${(err as Error).stack ?? String(err)}`));
    return carried;
  }

  /** Resolves once every effect queued so far is carried out (or failed). */
  settled(): Promise<void> {
    return this.queue;
  }
}
