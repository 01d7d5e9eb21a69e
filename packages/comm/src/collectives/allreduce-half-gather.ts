// The small-buffer all-reduce (allreduce-gather.ts) with a 16-bit wire: every rank's buffer
// travels the ring once as its 16-bit encoding, and each rank decodes the n buffers and reduces
// them itself in rank order, in float32, rounding the result once to 16 bits. Every rank reduces
// the same decoded values in the same order, its own included as it was sent, so all end
// bit-identical. Chosen by the same size rule as the float32 gather, so a 16-bit all-reduce always
// sends exactly half the bytes of the float32 one.
import { codecOf, type HalfCodec, type HalfDtype } from './half.ts';
import { mod } from './plan.ts';
import { combine, scale } from './reduce-ops.ts';
import { scheduleError, type Collective, type ReduceOp, type RingPort } from './types.ts';

export class HalfGatherAllReduce implements Collective<Uint16Array> {
  expecting: number;
  private readonly codec: HalfCodec;
  /** Every rank's encoded buffer, by rank; ours is set up front. */
  private readonly parts: (Uint16Array | null)[];

  constructor(
    private readonly port: RingPort,
    private readonly buf: Float32Array,
    private readonly op: ReduceOp,
    dtype: HalfDtype,
  ) {
    const { rank: r, worldSize: n } = port;
    this.codec = codecOf(dtype);
    this.expecting = n - 1;
    this.parts = new Array<Uint16Array | null>(n).fill(null);
    const own = new Uint16Array(buf.length);
    this.codec.encode(buf, own);
    this.parts[r] = own;
  }

  start(): void {
    this.port.send(0, 0, this.parts[this.port.rank]!);
  }

  onChunk(step: number, chunk: number, data: Uint16Array): void {
    const { rank: r, worldSize: n } = this.port;
    if (!(step >= 0 && step <= n - 2) || chunk !== 0)
      throw scheduleError(`16-bit gather all-reduce step ${step} chunk ${chunk} (expected steps 0..${n - 2}, chunk 0)`);
    if (data.length !== this.buf.length)
      throw scheduleError(
        `16-bit gather all-reduce step ${step}: received ${data.length} elements, expected ${this.buf.length}`,
      );
    // The payload may be a reused receive buffer: keep a copy, it is reduced only once all are in.
    this.parts[mod(r - step - 1, n)] = data.slice();
    this.expecting--;
    if (step < n - 2) this.port.send(step + 1, 0, data);
    if (this.expecting === 0) this.reduce();
  }

  private reduce(): void {
    const n = this.port.worldSize;
    const next = new Float32Array(this.buf.length);
    this.codec.decode(this.parts[0]!, this.buf);
    for (let q = 1; q < n; q++) {
      this.codec.decode(this.parts[q]!, next);
      combine(this.op, this.buf, this.buf, next);
    }
    if (this.op === 'avg') scale(this.buf, 1 / n);
    const out = new Uint16Array(this.buf.length);
    this.codec.encode(this.buf, out);
    this.codec.decode(out, this.buf);
  }
}
