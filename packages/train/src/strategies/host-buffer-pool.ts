// Host buffers kept for reuse, by length: DDP's read-back of a bucket on host-memory backends
// goes into a buffer the previous step used for the same bucket. A fresh buffer per bucket per
// step (what data() returns on wasm) is an ArrayBuffer V8 counts toward its next full
// collection, 43 MB per step for the small GPT.
export class HostBufferPool {
  private readonly spare = new Map<number, Float32Array[]>();

  /** A buffer of `length` elements: a returned one if any (its contents are stale), else a new one. */
  take(length: number): Float32Array {
    return this.spare.get(length)?.pop() ?? new Float32Array(length);
  }

  /** `buf` is free for a later take(). */
  give(buf: Float32Array): void {
    const spares = this.spare.get(buf.length);
    if (spares) spares.push(buf);
    else this.spare.set(buf.length, [buf]);
  }
}
