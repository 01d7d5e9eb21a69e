// All-reduce for small buffers: every rank's whole buffer travels around the ring (an
// all-gather, n-1 sequential hops instead of the ring algorithm's 2(n-1)), and each rank then
// reduces the n buffers itself, always in rank order ((x0 op x1) op x2 ...), so every rank
// computes bit-identical results. For small buffers the time is hop latency, not bytes, so
// halving the hops (one direct exchange with 2 ranks) is what counts; the price is (n-1)·B
// bytes per link instead of 2(n-1)/n·B and n-1 whole-buffer reductions per rank, which is why
// the process group uses it only up to a size that depends on the world size (env.ts).
import { mod } from './plan.ts';
import { combine, scale } from './reduce-ops.ts';
import { scheduleError, type Collective, type ReduceOp, type RingPort } from './types.ts';

export class GatherAllReduce implements Collective {
  expecting: number;
  /** Every rank's input, by rank; ours is set up front. */
  private readonly parts: (Float32Array | null)[];

  constructor(
    private readonly port: RingPort,
    private readonly buf: Float32Array,
    private readonly op: ReduceOp,
  ) {
    const { rank: r, worldSize: n } = port;
    this.expecting = n - 1;
    this.parts = new Array<Float32Array | null>(n).fill(null);
    // The result is accumulated into buf in rank order: from rank 2 on, our own input is still
    // needed after buf has been overwritten; and a payload above the inline size is sent by
    // reference, so the socket may still read it while we reduce. Both need a snapshot.
    const keep = r >= 2 || buf.byteLength > port.inlineMaxBytes;
    this.parts[r] = keep ? buf.slice() : buf;
  }

  start(): void {
    this.port.send(0, 0, this.parts[this.port.rank]!);
  }

  onChunk(step: number, chunk: number, data: Float32Array): void {
    const { rank: r, worldSize: n } = this.port;
    if (!(step >= 0 && step <= n - 2) || chunk !== 0)
      throw scheduleError(`gather all-reduce step ${step} chunk ${chunk} (expected steps 0..${n - 2}, chunk 0)`);
    if (data.length !== this.buf.length)
      throw scheduleError(
        `gather all-reduce step ${step}: received ${data.length} elements, expected ${this.buf.length}`,
      );
    const from = mod(r - step - 1, n);
    this.parts[from] = data;
    this.expecting--;
    if (step < n - 2) this.port.send(step + 1, 0, data);
    if (this.expecting === 0) this.reduce();
  }

  private reduce(): void {
    const { worldSize: n } = this.port;
    const p = this.parts as Float32Array[];
    // out may alias either input (elementwise), so buf can be p[0] or p[1] here.
    combine(this.op, this.buf, p[0]!, p[1]!);
    for (let q = 2; q < n; q++) combine(this.op, this.buf, this.buf, p[q]!);
    if (this.op === 'avg') scale(this.buf, 1 / n);
  }
}
