// How a buffer is cut for the ring: into worldSize contiguous segments (as even as possible,
// so any length works, including 0, 1 and primes), each cut into chunks of at most chunkElems.
// Every segment has at least one chunk, even an empty one, so that every rank still exchanges
// a (tagged) message at each step and a mismatched call is always noticed.
import { scheduleError } from './types.ts';

export class SegmentPlan {
  private readonly bounds: number[];

  constructor(
    readonly count: number,
    readonly segments: number,
    readonly chunkElems: number,
  ) {
    this.bounds = [];
    for (let i = 0; i <= segments; i++) this.bounds.push(Math.floor((i * count) / segments));
  }

  /** Segments of exactly `len` each (reduce-scatter, all-gather: count = segments * len). */
  static equal(len: number, segments: number, chunkElems: number): SegmentPlan {
    return new SegmentPlan(len * segments, segments, chunkElems);
  }

  start(seg: number): number {
    return this.bounds[seg]!;
  }

  length(seg: number): number {
    return this.bounds[seg + 1]! - this.bounds[seg]!;
  }

  chunks(seg: number): number {
    return Math.max(1, Math.ceil(this.length(seg) / this.chunkElems));
  }

  /** Absolute [begin, end) of chunk k of segment seg; throws if k is out of range. */
  range(seg: number, k: number): [number, number] {
    if (!Number.isInteger(k) || k < 0 || k >= this.chunks(seg))
      throw scheduleError(`chunk ${k} of segment ${seg} (has ${this.chunks(seg)})`);
    const a = this.bounds[seg]! + k * this.chunkElems;
    return [a, Math.min(a + this.chunkElems, this.bounds[seg + 1]!)];
  }
}

export function mod(a: number, n: number): number {
  return ((a % n) + n) % n;
}

/** Whether `data` already is buf[at ..] (received in place), so storing it would copy onto itself. */
export function isAt(data: Float32Array, buf: Float32Array, at: number): boolean {
  return data.buffer === buf.buffer && data.byteOffset === buf.byteOffset + at * 4;
}

export function checkLength(data: Float32Array, a: number, b: number, where: string): void {
  if (data.length !== b - a) throw scheduleError(`${where}: received ${data.length} elements, expected ${b - a}`);
}
