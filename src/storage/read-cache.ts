// A small, bounded cache of recently read values, in front of LMDB. A GET of a hot key then costs a map
// lookup instead of an LMDB read transaction renewal and a copy out of the map.
//
// Correctness rests on the Store: every write path forgets the keys it changes both inside its write
// transaction and again after the commit (with the read transaction reset), so a read that raced the
// commit and cached the old value is dropped before anyone can see it. Pure: no I/O.

export class ReadCache {
  private readonly entries = new Map<string, Buffer>();

  constructor(
    /** Entries kept at most; the oldest inserted is evicted first. */
    private readonly entriesMax: number,
    /** Larger values are not cached: they are rarely hot and would dominate the memory bound. */
    private readonly valueBytesMax: number,
  ) {}

  get(id: string): Buffer | undefined {
    return this.entries.get(id);
  }

  remember(id: string, value: Buffer): void {
    if (value.length > this.valueBytesMax || this.entriesMax === 0) return;
    if (this.entries.size >= this.entriesMax && !this.entries.has(id)) {
      this.entries.delete(this.entries.keys().next().value!);
    }
    this.entries.set(id, value);
  }

  forget(id: string): void {
    this.entries.delete(id);
  }

  clear(): void {
    this.entries.clear();
  }

  get size(): number {
    return this.entries.size;
  }
}
