// Gradients reduce-scattered block by block (ZeRO-2 and ZeRO-3): as backward hands over a
// block's gradients they are flattened, read back and reduce-scattered at once
// (grads-shard.ts), so the communication of block k overlaps the backward of block k-1 and only
// the owned gradient shard is kept; the device gradients are freed as soon as they are read.
import type { NamedTensors } from '../model.ts';
import { StrategyError } from '../strategy.ts';
import { checkKnownGrads, GradientShard } from './grads-shard.ts';
import type { ShardContext, ShardGradReducer } from './parts.ts';

export class ReduceScatterPerBlock implements ShardGradReducer {
  private readonly shard: GradientShard;

  constructor(
    private readonly ctx: ShardContext,
    buffer?: Float32Array,
  ) {
    // Micro-batches accumulate into the shard during backward, so it is kept for the run.
    this.shard = new GradientShard(ctx, buffer, false);
  }

  onBlockGrads(_block: number, grads: NamedTensors): void {
    if (Object.keys(grads).length === 0) return;
    checkKnownGrads(this.ctx, grads);
    // The engine emits a block's gradients complete, so they form whole groups.
    const byGroup = new Map<number, NamedTensors>();
    for (const [name, g] of Object.entries(grads)) {
      const gi = this.ctx.part.slot(name).group;
      let m = byGroup.get(gi);
      if (!m) byGroup.set(gi, (m = {}));
      m[name] = g;
    }
    for (const [gi, m] of byGroup) this.shard.reduceGroup(gi, m);
  }

  async complete(step: number): Promise<void> {
    const missing = this.ctx.part.groups.filter((g) => g.params.length > 0 && !this.shard.wasIssued(g.index));
    if (missing.length === 0) return;
    await this.shard.abort();
    throw new StrategyError(
      `finishStep at step ${step}: no gradients for block group(s) ${missing.map((g) => `"${g.name}"`).join(', ')}, ` +
        "expected every block's gradients from forwardBackward",
    );
  }

  wait(): Promise<Float32Array> {
    return this.shard.wait();
  }

  reset(): void {
    this.shard.reset();
  }

  async dispose(): Promise<void> {
    await this.shard.abort();
  }
}
