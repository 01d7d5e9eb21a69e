// Ring reduce-scatter. After n-1 steps rank r holds segment r reduced over all ranks.
//
// At step s rank r sends segment (r-s-1) and receives segment (r-s-2) from its previous
// rank, adds its own contribution and forwards it at step s+1; at the last step the segment
// it receives is its own, now complete. Each chunk is forwarded the moment it is reduced, so
// the ring is pipelined chunk by chunk: while this rank reduces chunk k the kernel already
// receives chunk k+1 and the next rank already reduces chunk k-1. No buffer besides the
// received chunks is needed, and the input is never written.
import { combine, scale } from './reduce-ops.ts';
import { checkLength, mod, SegmentPlan } from './plan.ts';
import { scheduleError, type Collective, type ReduceOp, type RingPort } from './types.ts';

/** The reduce-scatter half of the ring, also used by all-reduce. */
export class ReduceScatterPhase {
  expecting = 0;

  constructor(
    private readonly port: RingPort,
    private readonly plan: SegmentPlan,
    private readonly op: ReduceOp,
    private readonly src: Float32Array,
    /** Where the final segment r goes: dst[i - dstOffset] for absolute index i. */
    private readonly dst: Float32Array,
    private readonly dstOffset: number,
    /** Called when chunk k of our own segment is complete (all-reduce starts gathering it). */
    private readonly onFinal?: (k: number) => void,
  ) {
    const { rank: r, worldSize: n } = port;
    for (let s = 0; s < n - 1; s++) this.expecting += plan.chunks(mod(r - s - 2, n));
  }

  start(): void {
    const { rank: r, worldSize: n } = this.port;
    const seg = mod(r - 1, n);
    for (let k = 0; k < this.plan.chunks(seg); k++) {
      const [a, b] = this.plan.range(seg, k);
      this.port.send(0, k, this.src.subarray(a, b));
    }
  }

  /** Partial sums are consumed by the reduction (or reduced into and forwarded): any reused buffer will do. */
  receiveInto(): 'scratch' {
    return 'scratch';
  }

  onChunk(s: number, k: number, data: Float32Array): void {
    const { rank: r, worldSize: n } = this.port;
    if (!(s >= 0 && s <= n - 2)) throw scheduleError(`reduce-scatter step ${s} (expected 0..${n - 2})`);
    const seg = mod(r - s - 2, n);
    const [a, b] = this.plan.range(seg, k);
    checkLength(data, a, b, `reduce-scatter step ${s} chunk ${k}`);
    this.expecting--;
    if (s < n - 2) {
      combine(this.op, data, data, this.src.subarray(a, b));
      this.port.send(s + 1, k, data);
      return;
    }
    // Last step: our own segment, reduced straight into its destination.
    const out = this.dst.subarray(a - this.dstOffset, b - this.dstOffset);
    combine(this.op, out, this.src.subarray(a, b), data);
    if (this.op === 'avg') scale(out, 1 / n);
    this.onFinal?.(k);
  }
}

/** A collective that is one reduce-scatter phase: reduceScatter's own, or the in-place half of a ring all-reduce. */
export class ReduceScatter implements Collective {
  constructor(private readonly phase: ReduceScatterPhase) {}

  get expecting(): number {
    return this.phase.expecting;
  }

  start(): void {
    this.phase.start();
  }

  onChunk(step: number, chunk: number, data: Float32Array): void {
    this.phase.onChunk(step, chunk, data);
  }

  receiveInto(): 'scratch' {
    return 'scratch';
  }
}

/** reduceScatter(input, output): output = segment `rank` of the reduction of every rank's input. */
export function reduceScatter(port: RingPort, input: Float32Array, output: Float32Array, op: ReduceOp): ReduceScatter {
  const plan = SegmentPlan.equal(output.length, port.worldSize, port.chunkElems);
  return new ReduceScatter(new ReduceScatterPhase(port, plan, op, input, output, plan.start(port.rank)));
}

/**
 * The reduce-scatter half of the ring all-reduce alone, in place and on any length: buf is cut
 * as the all-reduce cuts it (plan.ts), and segment `rank` of buf becomes that segment reduced
 * over every rank; the other segments are read, never written. The hierarchical all-reduce
 * runs it among the ranks of a node.
 */
export function reduceScatterInPlace(port: RingPort, buf: Float32Array, op: ReduceOp): ReduceScatter {
  const plan = new SegmentPlan(buf.length, port.worldSize, port.chunkElems);
  return new ReduceScatter(new ReduceScatterPhase(port, plan, op, buf, buf, 0));
}
