// The store of one kvshard process: one LMDB environment with the shard's data, its metadata and, on a
// primary, the replication log. Each concern has its own module, stacked into this one class so the
// rest of the node holds one store: data-store.ts (the environment, the data and the read cache),
// dataset-store.ts (dataset ids, a replica's position and resync, a primary's rebuild),
// migration-store.ts (migration records and tombstones), failover-store.ts (epochs, promotion and
// demotion) and snapshot.ts (snapshots and digests).

import { FailoverStore } from './failover-store.js';
import { digestSlots, takeSnapshot, type SlotRangeDigest, type Snapshot } from './snapshot.js';

export class Store extends FailoverStore {
  /** A consistent snapshot of the data with the sequence it reflects. Call done() when finished. */
  snapshot(): Snapshot {
    return takeSnapshot({ root: this.root, data: this.data, meta: this.meta, log: this.log });
  }

  /**
   * Digests of the keys and values in `buckets` equal ranges of slots from `fromSlot` to `toSlot`, read
   * in one consistent snapshot. Equal digests mean equal data; a differing range can be narrowed further.
   */
  digest(fromSlot: number, toSlot: number, buckets: number): SlotRangeDigest[] {
    return digestSlots({ root: this.root, data: this.data, meta: this.meta, log: this.log }, fromSlot, toSlot, buckets);
  }
}
