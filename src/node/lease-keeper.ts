// A member's side of the coordinator (cluster/coordinator.ts): it keeps one etcd lease alive, watches its
// shard's key, and campaigns when the member decides to (member-role.ts's campaign effect). Every answer
// becomes an event of the member's state; this file decides nothing of its own. One loop per member,
// a tick every keyPollMs (a third of the TTL, at most 500 ms), every etcd call bounded by etcdCallTimeoutMs.

import { readFileSync } from 'node:fs';
import { sleep } from '../core/backoff.js';
import { canonicalAddress, type ShardConfig } from '../core/config.js';
import type { CoordinatorSettings } from '../core/coordinator-config.js';
import { etcdCallTimeoutMs } from '../core/limits.js';
import type { Log } from '../core/log.js';
import { campaign, campaignOutcome, decodeCounter, decodeHolder, keyPollMs, type ShardKeys, shardKeys } from '../cluster/coordinator.js';
import { EtcdClient } from '../peer/etcd-client.js';
import type { SavedLease } from '../storage/failover-store.js';
import type { Member } from './member.js';

/** The least pause between two key reads, when a replica's wait is about to end. */
const campaignPauseMinMs = 10;

/** The running kernel's boot id (Linux), or '' where there is none: then no lease outlives its process. */
function bootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return '';
  }
}

/** What a failover through etcd came to: the epoch won, a refusal that changed nothing, or no answer from etcd. */
export type TakeOver = { readonly epoch: number } | { readonly refused: string } | { readonly unavailable: string; readonly changed: false | 'unknown' };

export interface LeaseKeeperOptions {
  readonly settings: CoordinatorSettings;
  readonly shard: ShardConfig;
  /** This member's address, as the key names it. */
  readonly address: string;
  readonly member: Member;
  readonly log: Log;
  /** Whether the store holds a complete copy of the shard. */
  complete(): boolean;
  /** Entries this member was behind its primary at their last contact (0 as primary). */
  lag(): number;
  /** Where the member keeps its lease's id across restarts (its data dir). */
  readonly saved: {
    coordinatorLease(): SavedLease | undefined;
    recordCoordinatorLease(lease: SavedLease): Promise<void>;
  };
}

export class LeaseKeeper {
  private readonly client: EtcdClient;
  private readonly abort = new AbortController();
  private readonly keys: ShardKeys;
  private lease: string | undefined;
  private loop: Promise<void> | undefined;
  /** The last etcd failure logged, so a long outage logs once, not every tick. */
  private lastFailure: string | undefined;
  /** Until the first lease is taken: only then may the lease from before a restart be kept. */
  private firstLease = true;

  constructor(private readonly options: LeaseKeeperOptions) {
    this.client = new EtcdClient({ endpoints: options.settings.etcd, timeoutMs: etcdCallTimeoutMs, signal: this.abort.signal });
    this.keys = shardKeys(options.settings.prefix, options.shard.name);
  }

  start(): void {
    this.loop ??= this.run();
  }

  /**
   * Stops the loop. A member that holds its shard's key gives it up (revokes its lease), so the other
   * member takes over at once instead of after the TTL: Patroni's leader key release on shutdown.
   */
  async close(): Promise<void> {
    this.abort.abort();
    await this.loop;
    // Read once the loop has stopped: a campaign it ran may have won the key meanwhile.
    const lease = this.lease;
    const held = this.options.member.state.lease?.holdsKey === true;
    if (held && lease !== undefined) {
      const release = new EtcdClient({
        endpoints: this.options.settings.etcd,
        timeoutMs: etcdCallTimeoutMs,
        signal: AbortSignal.timeout(etcdCallTimeoutMs * 2),
      });
      await release
        .revoke(lease)
        .then(() => this.options.log.info(`${this.options.shard.name}: released its key in etcd on shutdown`))
        .catch(() => undefined);
      release.close();
    }
    this.client.close();
  }

  /** Runs one campaign for the vacant key above `knownEpoch` (the member's campaign effect). */
  async campaign(knownEpoch: number): Promise<void> {
    const { member, shard, address, log } = this.options;
    const lease = this.lease;
    if (lease === undefined) return;
    try {
      const attempt = campaign(this.keys, canonicalAddress(address), knownEpoch, decodeCounter(await this.client.get(this.keys.epoch)), lease);
      const outcome = campaignOutcome(attempt, await this.client.txn(attempt.txn));
      // Dispatched, not awaited: this runs as one of the member's effects, and the event's own effects queue behind it.
      if (outcome.won) {
        log.warn(`${shard.name}: its key in etcd was vacant; this member took it at epoch ${outcome.epoch}`);
        void member.dispatch({ type: 'campaignWon', epoch: outcome.epoch, kind: 'lease_expired', complete: this.options.complete() }).catch(() => undefined);
      } else if (outcome.holder !== undefined) {
        const event = { type: 'keyHeld', ...outcome.holder, ours: false, complete: this.options.complete() } as const;
        void member.dispatch(event).catch(() => undefined);
      }
    } catch (err) {
      this.failed('campaign', err);
    }
  }

  /**
   * A failover through etcd (`kvshard failover`): takes the shard's key at the next epoch, or says why
   * not. A switchover replaces the key of `primary`, whose writes are paused, only while the key is
   * still the one read here; a forced one takes only a vacant key, since a primary whose lease lives
   * may still acknowledge writes.
   */
  async takeOver(kind: 'switchover' | 'forced', primary: string, knownEpoch: number): Promise<TakeOver> {
    const lease = this.lease;
    if (lease === undefined || this.options.member.state.lease?.overdue !== false)
      return { refused: 'this member holds no live etcd lease (is etcd reachable?)' };
    let kv: Awaited<ReturnType<EtcdClient['get']>>;
    let counter: ReturnType<typeof decodeCounter>;
    try {
      [kv, counter] = await Promise.all([this.client.get(this.keys.primary), this.client.get(this.keys.epoch).then(decodeCounter)]);
    } catch (err) {
      return { unavailable: (err as Error).message, changed: false };
    }
    const holder = decodeHolder(kv);
    if (kind === 'forced' && holder !== undefined) {
      return {
        refused:
          `${holder.member} holds the shard's key in etcd at epoch ${holder.epoch} under a live lease, so it may still take writes; ` +
          'once its lease expires, the shard fails over by itself',
      };
    }
    if (kind === 'switchover' && (holder === undefined || canonicalAddress(holder.member) !== canonicalAddress(primary))) {
      return { refused: `the shard's key in etcd names ${holder?.member ?? 'nobody'}, not the primary ${primary}` };
    }
    const attempt = campaign(
      this.keys,
      canonicalAddress(this.options.address),
      knownEpoch,
      counter,
      lease,
      kind === 'switchover' ? kv!.modRevision : undefined,
    );
    let reply: Awaited<ReturnType<EtcdClient['txn']>>;
    try {
      reply = await this.client.txn(attempt.txn);
    } catch (err) {
      // The transaction may have been applied without its answer arriving: then the key names this
      // member at an epoch it never adopts, and it resigns once the failover has ended (member-role.ts).
      return { unavailable: (err as Error).message, changed: 'unknown' };
    }
    const outcome = campaignOutcome(attempt, reply);
    if (outcome.won) return { epoch: outcome.epoch };
    return { refused: `the shard's key or epoch changed in etcd meanwhile (now ${outcome.holder?.member ?? 'nobody'} at epoch ${outcome.counter.epoch})` };
  }

  private async run(): Promise<void> {
    const period = keyPollMs(this.options.settings.leaseTtlMs);
    while (!this.abort.signal.aborted) {
      if (await this.renew()) await this.watch();
      // A replica leaving a vacant key to its primary reads it again as its wait ends, not a poll later.
      const campaignAt = this.options.member.state.lease?.campaignAt;
      const pause = campaignAt === undefined ? period : Math.min(period, Math.max(campaignPauseMinMs, campaignAt - performance.now()));
      await sleep(pause, this.abort.signal).catch(() => undefined);
    }
  }

  /**
   * Gives up the key this member holds at an epoch it never adopted (member-role.ts's resign effect):
   * revoking the lease deletes the key, and the next tick takes a new lease.
   */
  async resign(): Promise<void> {
    const lease = this.lease;
    if (lease === undefined) return;
    this.lease = undefined;
    this.options.log.warn(`${this.options.shard.name}: its key in etcd names it at an epoch it never adopted; giving the key up`);
    await this.client.revoke(lease).catch((err: unknown) => this.failed('lease revoke', err));
  }

  /** Grants a lease when there is none, else renews it; false when etcd did not answer. */
  private async renew(): Promise<boolean> {
    const { member, shard, log } = this.options;
    const sentAt = performance.now();
    try {
      if (this.lease === undefined) {
        await this.takeLease(sentAt);
      } else if ((await this.client.keepAlive(this.lease)) > 0) {
        await member.dispatch({ type: 'leaseRenewed', sentAt });
      } else {
        log.warn(`${shard.name}: its etcd lease had expired; taking a new one`);
        this.lease = undefined;
        await this.takeLease(sentAt);
      }
      this.lastFailure = undefined;
      return true;
    } catch (err) {
      this.failed('lease renewal', err);
      if (member.state.lease?.overdue === false) await member.dispatch({ type: 'renewalOverdue' });
      return false;
    }
  }

  /**
   * The lease this member held before a restart, if etcd still has it (a crash, then a start within the
   * TTL): it keeps its key, with no wait for the key to lapse. Only on the same running kernel (boot id),
   * the same member, shard and etcd prefix: there the data dir's lock makes sure that no other process of
   * this member renews the lease meanwhile, which a copied data dir on another machine could. Otherwise a
   * new lease, recorded before it is used.
   */
  private async takeLease(sentAt: number): Promise<void> {
    const { member, settings, saved, address, shard, log } = this.options;
    const whose = { member: canonicalAddress(address), shard: shard.name, prefix: settings.prefix, boot: bootId() };
    if (this.firstLease) {
      const before = saved.coordinatorLease();
      const same = before !== undefined && whose.boot !== '' && (['member', 'shard', 'prefix', 'boot'] as const).every((k) => before[k] === whose[k]);
      // Decided only once etcd has answered about it: a start while etcd is away tries again next tick.
      const alive = same && (await this.client.keepAlive(before.id)) > 0;
      this.firstLease = false;
      if (alive) {
        this.lease = before!.id;
        log.info(`${shard.name}: kept its etcd lease from before the restart`);
        await member.dispatch({ type: 'leaseRenewed', sentAt });
        return;
      }
    }
    const lease = await this.client.grantLease(settings.leaseTtlMs / 1000);
    await saved.recordCoordinatorLease({ id: lease, ...whose });
    this.lease = lease;
    await member.dispatch({ type: 'leaseGranted', sentAt });
  }

  /** Reads the shard's key and tells the member who holds it (awaiting a campaign it starts, so campaigns never pile up). */
  private async watch(): Promise<void> {
    const { member, address } = this.options;
    try {
      const kv = await this.client.get(this.keys.primary);
      const holder = decodeHolder(kv);
      const complete = this.options.complete();
      if (holder === undefined) {
        // Read only while the key is vacant: whether etcd kept its data decides how long a replica waits.
        // A revision that went back within the last TTL says a restore, which keeps a counter.
        const counter = await this.client.get(this.keys.epoch);
        const wentBack = this.client.revisionWentBackAt;
        const etcdDataKept = counter !== undefined && (wentBack === undefined || performance.now() - wentBack > this.options.settings.leaseTtlMs);
        await member.dispatch({ type: 'keyVacant', complete, lag: this.options.lag(), now: performance.now(), etcdDataKept });
      } else {
        const ours = kv!.lease === this.lease && canonicalAddress(holder.member) === canonicalAddress(address);
        await member.dispatch({ type: 'keyHeld', member: holder.member, epoch: holder.epoch, ours, complete });
      }
    } catch (err) {
      this.failed('key read', err);
    }
  }

  private failed(what: string, err: unknown): void {
    if (this.abort.signal.aborted) return;
    const message = `${this.options.shard.name}: etcd ${what} failed: ${(err as Error).message}`;
    if (message !== this.lastFailure) this.options.log.warn(message);
    this.lastFailure = message;
  }
}
