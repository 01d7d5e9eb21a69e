// Reused receive buffers for chunks that a collective consumes (reduces) rather than stores.
//
// Every chunk of a reduce-scatter used to arrive in a freshly allocated buffer that became
// garbage right after the reduction: ~1 GB of garbage per second at full speed, which drives
// V8's full GCs (external memory) and makes every write land on memory the kernel must first
// hand out again. A chunk's buffer is released when the collective is done with it, and the
// next chunk of that size reuses it, so a steady stream of collectives allocates nothing.
//
// New buffers come from the SIMD module's memory while it has room (simd-add.ts): a sum into
// a received chunk then needs no copy in or out of WebAssembly.
import { inSimdArena, simdArena } from './collectives/simd-add.ts';

export class ScratchPool {
  private readonly free = new Map<number, Uint8Array[]>();
  private freeBytes = 0;

  /** Buffers kept for reuse beyond this are left to the garbage collector. */
  constructor(private readonly maxFreeBytes: number) {}

  take(bytes: number): Uint8Array {
    const list = this.free.get(bytes);
    const buf = list?.pop();
    if (buf) {
      this.freeBytes -= bytes;
      return buf;
    }
    return simdArena(bytes) ?? new Uint8Array(bytes);
  }

  release(buf: Uint8Array): void {
    // Arena buffers are kept whatever the cap: the arena never takes memory back.
    if (this.freeBytes + buf.byteLength > this.maxFreeBytes && !inSimdArena(buf)) return;
    let list = this.free.get(buf.byteLength);
    if (!list) this.free.set(buf.byteLength, (list = []));
    list.push(buf);
    this.freeBytes += buf.byteLength;
  }
}
