// Ring all-reduce with a 16-bit wire (bfloat16 or float16; half.ts): the schedule of allreduce.ts
// (reduce-scatter, then all-gather of each chunk as soon as it is final), on float32 data whose
// chunks travel as 16-bit encodings, so every link carries half the bytes. Each hop decodes the
// partial sum it receives, reduces it with its own float32 values in float32, and encodes the
// result to forward it, as torch's fp16/bf16 compress hooks amount to on a ring (the sum is
// rounded to 16 bits at every hop, never accumulated in 16 bits). The owner of a segment rounds
// its final value to 16 bits too, so every rank ends with the very values that travelled:
// bit-identical everywhere, each a value of the 16-bit type. Small buffers take
// allreduce-half-gather.ts instead, by the float32 call's rule.
import { codecOf, type HalfCodec, type HalfDtype } from './half.ts';
import { mod, SegmentPlan } from './plan.ts';
import { combine, scale } from './reduce-ops.ts';
import { scheduleError, type Collective, type ReduceOp, type RingPort } from './types.ts';

export class HalfAllReduce implements Collective<Uint16Array> {
  expecting = 0;
  private readonly codec: HalfCodec;
  private readonly plan: SegmentPlan;
  /**
   * Our own encoded values: segment r-1 for the first reduce-scatter sends, our final segment r
   * for the all-gather. Sends are not copied, so each region stays as sent until the call ends.
   */
  private readonly wire: Uint16Array;
  /** A received chunk decoded (reused: chunks are reduced one at a time). */
  private tmp = new Float32Array(0);
  private readonly gatherBase: number;

  constructor(
    private readonly port: RingPort,
    private readonly buf: Float32Array,
    private readonly op: ReduceOp,
    dtype: HalfDtype,
  ) {
    const { rank: r, worldSize: n } = port;
    this.codec = codecOf(dtype);
    // The same bytes per chunk as a float32 call: twice the elements.
    this.plan = new SegmentPlan(buf.length, n, port.chunkElems * 2);
    this.wire = new Uint16Array(buf.length);
    this.gatherBase = n - 1;
    for (let s = 0; s < n - 1; s++) this.expecting += this.plan.chunks(mod(r - s - 2, n));
    for (let t = 0; t < n - 1; t++) this.expecting += this.plan.chunks(mod(r - t - 1, n));
  }

  start(): void {
    const { rank: r, worldSize: n } = this.port;
    const seg = mod(r - 1, n);
    for (let k = 0; k < this.plan.chunks(seg); k++) {
      const [a, b] = this.plan.range(seg, k);
      const out = this.wire.subarray(a, b);
      this.codec.encode(this.buf.subarray(a, b), out);
      this.port.send(0, k, out);
    }
  }

  /** Every received chunk is decoded, then reduced into or forwarded: any reused buffer will do. */
  receiveInto(): 'scratch' {
    return 'scratch';
  }

  onChunk(step: number, k: number, data: Uint16Array): void {
    const n = this.port.worldSize;
    if (!(step >= 0 && step <= 2 * n - 3))
      throw scheduleError(`16-bit all-reduce step ${step} (expected 0..${2 * n - 3})`);
    this.expecting--;
    if (step < this.gatherBase) this.reduceChunk(step, k, data);
    else this.gatherChunk(step - this.gatherBase, k, data);
  }

  private reduceChunk(s: number, k: number, data: Uint16Array): void {
    const { rank: r, worldSize: n } = this.port;
    const [a, b] = this.range(mod(r - s - 2, n), k, data, `reduce-scatter step ${s}`);
    const own = this.buf.subarray(a, b);
    const sum = this.decoded(data);
    combine(this.op, sum, sum, own);
    if (s < n - 2) {
      // Re-encoded into the received buffer, which goes on to the next rank.
      this.codec.encode(sum, data);
      this.port.send(s + 1, k, data);
      return;
    }
    // Our own segment, complete: round it as the others will receive it, then start its all-gather.
    if (this.op === 'avg') scale(sum, 1 / n);
    const out = this.wire.subarray(a, b);
    this.codec.encode(sum, out);
    this.codec.decode(out, own);
    this.port.send(this.gatherBase, k, out);
  }

  private gatherChunk(t: number, k: number, data: Uint16Array): void {
    const { rank: r, worldSize: n } = this.port;
    const [a, b] = this.range(mod(r - t - 1, n), k, data, `all-gather step ${t}`);
    this.codec.decode(data, this.buf.subarray(a, b));
    if (t < n - 2) this.port.send(this.gatherBase + t + 1, k, data);
  }

  private range(seg: number, k: number, data: Uint16Array, where: string): [number, number] {
    const [a, b] = this.plan.range(seg, k);
    if (data.length !== b - a)
      throw scheduleError(`${where} chunk ${k}: received ${data.length} elements, expected ${b - a}`);
    return [a, b];
  }

  private decoded(data: Uint16Array): Float32Array {
    if (this.tmp.length < data.length) this.tmp = new Float32Array(data.length);
    const out = this.tmp.subarray(0, data.length);
    this.codec.decode(data, out);
    return out;
  }
}
