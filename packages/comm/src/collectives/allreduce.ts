// Ring all-reduce = reduce-scatter then all-gather (Patarasuk & Yuan; Gloo's allreduce_ring):
// each rank sends and receives 2(n-1)/n of the buffer, the bandwidth optimum. The two phases
// are not separated by a barrier: as soon as a chunk of our own segment is fully reduced it
// starts its all-gather journey, so both phases overlap on the wire. Works in place on any
// length: the segments are as even as possible (plan.ts).
import { AllGatherPhase } from './allgather.ts';
import { SegmentPlan } from './plan.ts';
import { ReduceScatterPhase } from './reducescatter.ts';
import type { Collective, ReduceOp, RingPort } from './types.ts';

export class AllReduce implements Collective {
  private readonly rs: ReduceScatterPhase;
  private readonly ag: AllGatherPhase;
  private readonly gatherBase: number;

  constructor(port: RingPort, buf: Float32Array, op: ReduceOp) {
    const plan = new SegmentPlan(buf.length, port.worldSize, port.chunkElems);
    this.gatherBase = port.worldSize - 1;
    this.ag = new AllGatherPhase(port, plan, buf, this.gatherBase);
    this.rs = new ReduceScatterPhase(port, plan, op, buf, buf, 0, (k) => this.ag.sendOwn(k));
  }

  get expecting(): number {
    return this.rs.expecting + this.ag.expecting;
  }

  start(): void {
    this.rs.start();
  }

  receiveInto(step: number, chunk: number, elems: number): Float32Array | 'scratch' | null {
    return step < this.gatherBase ? this.rs.receiveInto() : this.ag.receiveInto(step - this.gatherBase, chunk, elems);
  }

  onChunk(step: number, chunk: number, data: Float32Array): void {
    if (step < this.gatherBase) this.rs.onChunk(step, chunk, data);
    else this.ag.onChunk(step - this.gatherBase, chunk, data);
  }
}
