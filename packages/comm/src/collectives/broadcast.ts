// Pipelined chain broadcast along the ring: root -> root+1 -> ... -> root-1. Each rank
// forwards a chunk as soon as it has stored it, so for large buffers every link carries the
// whole buffer once, concurrently (time ~ size/bandwidth + (n-2) chunk latencies).
import { checkLength, isAt, mod, SegmentPlan } from './plan.ts';
import { scheduleError, type Collective, type RingPort } from './types.ts';

export class Broadcast implements Collective {
  expecting: number;
  private readonly plan: SegmentPlan;
  private readonly pos: number;

  constructor(
    private readonly port: RingPort,
    private readonly buf: Float32Array,
    private readonly root: number,
  ) {
    this.plan = new SegmentPlan(buf.length, 1, port.chunkElems);
    this.pos = mod(port.rank - root, port.worldSize);
    this.expecting = this.pos === 0 ? 0 : this.plan.chunks(0);
  }

  start(): void {
    if (this.pos !== 0) return;
    for (let k = 0; k < this.plan.chunks(0); k++) {
      const [a, b] = this.plan.range(0, k);
      this.port.send(0, k, this.buf.subarray(a, b));
    }
  }

  /** Straight into the buffer, and forwarded from there. */
  receiveInto(step: number, chunk: number, elems: number): Float32Array | null {
    if (step !== 0 || this.pos === 0 || !(chunk >= 0 && chunk < this.plan.chunks(0))) return null;
    const [a, b] = this.plan.range(0, chunk);
    return elems === b - a ? this.buf.subarray(a, b) : null;
  }

  onChunk(step: number, chunk: number, data: Float32Array): void {
    if (step !== 0 || this.pos === 0) throw scheduleError(`broadcast step ${step} at position ${this.pos}`);
    const [a, b] = this.plan.range(0, chunk);
    checkLength(data, a, b, `broadcast chunk ${chunk}`);
    if (!isAt(data, this.buf, a)) this.buf.set(data, a);
    this.expecting--;
    if (this.pos < this.port.worldSize - 1) this.port.send(0, chunk, data);
  }
}
