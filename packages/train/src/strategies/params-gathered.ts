// Parameters sharded and gathered per block (ZeRO-3): each rank keeps only its shard of the
// parameters, as a host array (the offloaded optimizer's master copy when there is one); before a
// block runs forward or backward its groups are all-gathered, the next block's gather issued
// while it computes (params-block-gatherer.ts), and freed after. Since the tensors a forward read
// are gone by backward, the engine recomputes each block's forward from its saved input.
//
// The optimizer updates the shard in place, and the next gathers read it: nothing is published.
import type { Phase } from '../engine.ts';
import type { NamedTensors } from '../model.ts';
import { BlockGatherer } from './params-block-gatherer.ts';
import type { ShardContext, ShardedParams } from './parts.ts';
import type { ShardOptimizer } from './optim-shard.ts';

export class GatheredPerBlock implements ShardedParams {
  /** Gathered blocks are freed after use: backward gathers them again and recomputes. */
  static readonly recomputeActivations = true;
  private readonly shard: Float32Array;
  private readonly gatherer: BlockGatherer;

  constructor(
    private readonly ctx: ShardContext,
    flat: Float32Array,
    master?: Float32Array,
  ) {
    const { part, comm, mem, model, queue } = ctx;
    if (master) this.shard = master;
    else {
      this.shard = part.shard(flat, comm.rank);
      mem.alloc('params', 'host', 4 * part.shardLength, 'parameter shard');
    }
    this.gatherer = new BlockGatherer(model, part, comm, queue, () => this.shard, mem);
  }

  get gatherStats(): { gathers: number; acquires: number; prefetchHits: number } {
    const g = this.gatherer;
    return { gathers: g.gathers, acquires: g.acquires, prefetchHits: g.prefetchHits };
  }

  acquire(block: number, phase: Phase): Promise<NamedTensors> {
    return this.gatherer.acquire(block, phase);
  }

  release(block: number): void {
    this.gatherer.release(block);
  }

  /** Drop prefetches nobody took (e.g. after a failed forward). */
  settle(): Promise<void> {
    return this.gatherer.settle();
  }

  async update(opt: ShardOptimizer, grads: Float32Array, lr: number, t: number): Promise<Float32Array> {
    await opt.step(this.shard, grads, lr, t);
    return this.shard;
  }

  async publish(): Promise<void> {}

  async fullParams(): Promise<Map<string, Float32Array>> {
    const { part, comm, queue } = this.ctx;
    const N = comm.worldSize;
    const L = part.shardLength;
    const all = new Float32Array(N * L);
    await queue.issue(this.shard, (x) => comm.allGather(x, all));
    const shards = Array.from({ length: N }, (_, r) => all.subarray(r * L, (r + 1) * L));
    return part.unflatten(part.unshard(shards));
  }

  async shardCopy(): Promise<Float32Array> {
    return this.shard.slice();
  }

  async load(shard: Float32Array): Promise<void> {
    this.shard.set(shard);
  }

  dispose(): void {}
}
