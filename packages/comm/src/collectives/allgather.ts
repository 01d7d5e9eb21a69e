// Ring all-gather. Rank r starts with segment r; at step t it sends segment (r-t) and
// receives segment (r-t-1), which it stores and forwards at step t+1 (unless it was the last
// one). Received chunks are forwarded as they are, so nothing is copied on the way but the
// store into the output.
import { checkLength, isAt, mod, SegmentPlan } from './plan.ts';
import { scheduleError, type Collective, type RingPort } from './types.ts';

/** The all-gather half of the ring, also used by all-reduce (whose steps start at stepBase). */
export class AllGatherPhase {
  expecting = 0;

  constructor(
    private readonly port: RingPort,
    private readonly plan: SegmentPlan,
    private readonly buf: Float32Array,
    private readonly stepBase: number,
  ) {
    const { rank: r, worldSize: n } = port;
    for (let t = 0; t < n - 1; t++) this.expecting += plan.chunks(mod(r - t - 1, n));
  }

  /** Sends chunk k of our own segment (all-reduce calls this as each one is reduced). */
  sendOwn(k: number): void {
    const [a, b] = this.plan.range(this.port.rank, k);
    this.port.send(this.stepBase, k, this.buf.subarray(a, b));
  }

  sendAllOwn(): void {
    for (let k = 0; k < this.plan.chunks(this.port.rank); k++) this.sendOwn(k);
  }

  /** Straight into the output: the chunk is stored where it belongs and forwarded from there. */
  receiveInto(t: number, k: number, elems: number): Float32Array | null {
    const { rank: r, worldSize: n } = this.port;
    const seg = mod(r - t - 1, n);
    if (!(t >= 0 && t <= n - 2) || !(k >= 0 && k < this.plan.chunks(seg))) return null;
    const [a, b] = this.plan.range(seg, k);
    return elems === b - a ? this.buf.subarray(a, b) : null;
  }

  onChunk(t: number, k: number, data: Float32Array): void {
    const { rank: r, worldSize: n } = this.port;
    if (!(t >= 0 && t <= n - 2)) throw scheduleError(`all-gather step ${t} (expected 0..${n - 2})`);
    const seg = mod(r - t - 1, n);
    const [a, b] = this.plan.range(seg, k);
    checkLength(data, a, b, `all-gather step ${t} chunk ${k}`);
    if (!isAt(data, this.buf, a)) this.buf.set(data, a);
    this.expecting--;
    if (t < n - 2) this.port.send(this.stepBase + t + 1, k, data);
  }
}

/** allGather(input, output): output = concatenation of every rank's input, in rank order. */
/** A collective that is one all-gather phase: allGather's own, or the in-place half of a ring all-reduce. */
export class AllGather implements Collective {
  constructor(private readonly phase: AllGatherPhase) {}

  get expecting(): number {
    return this.phase.expecting;
  }

  start(): void {
    this.phase.sendAllOwn();
  }

  onChunk(step: number, chunk: number, data: Float32Array): void {
    this.phase.onChunk(step, chunk, data);
  }

  receiveInto(step: number, chunk: number, elems: number): Float32Array | null {
    return this.phase.receiveInto(step, chunk, elems);
  }
}

/** allGather(input, output): every rank's input, in rank order, in every rank's output. */
export function allGather(port: RingPort, input: Float32Array, output: Float32Array): AllGather {
  const plan = SegmentPlan.equal(input.length, port.worldSize, port.chunkElems);
  const own = plan.start(port.rank);
  // The caller may pass its own slot of the output as input (in-place all-gather).
  if (!(input.buffer === output.buffer && input.byteOffset === output.byteOffset + own * 4)) output.set(input, own);
  return new AllGather(new AllGatherPhase(port, plan, output, 0));
}

/**
 * The all-gather half of the ring all-reduce alone, in place and on any length: each rank
 * holds segment `rank` of buf (cut as the all-reduce cuts it, plan.ts), and every segment ends
 * up on every rank. The hierarchical all-reduce runs it among the ranks of a node.
 */
export function allGatherInPlace(port: RingPort, buf: Float32Array): AllGather {
  return new AllGather(new AllGatherPhase(port, new SegmentPlan(buf.length, port.worldSize, port.chunkElems), buf, 0));
}
