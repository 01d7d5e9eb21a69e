// Gradients reduce-scattered once per step (ZeRO-1): backward only sums each parameter's
// gradient on the device, as one process would; at the end of the step every group is
// reduce-scattered (grads-shard.ts), in reverse group order as backward would have produced them,
// into a gradient shard that exists only until the update. Micro-batches therefore cost one
// reduction per step, and the device keeps full gradients during backward (ZeRO-1 shards only
// the optimizer state).
import * as tf from '@tensorflow/tfjs-core';
import type { NamedTensors } from '../model.ts';
import type { Allocation } from '../memory.ts';
import { StrategyError } from '../strategy.ts';
import { checkKnownGrads, GradientShard } from './grads-shard.ts';
import type { ShardContext, ShardGradReducer } from './parts.ts';

export class ReduceScatterAtStep implements ShardGradReducer {
  private readonly shard: GradientShard;
  /** Full local gradients, summed on the device during backward. */
  private readonly local = new Map<string, tf.Tensor>();
  private readonly localAllocs = new Map<string, Allocation>();

  constructor(
    private readonly ctx: ShardContext,
    buffer?: Float32Array,
  ) {
    this.shard = new GradientShard(ctx, buffer, true);
  }

  onBlockGrads(_block: number, grads: NamedTensors): void {
    if (Object.keys(grads).length === 0) return;
    checkKnownGrads(this.ctx, grads);
    for (const [name, g] of Object.entries(grads)) {
      const prev = this.local.get(name);
      if (prev) {
        this.local.set(name, tf.add(prev, g));
        tf.dispose([prev, g]);
      } else {
        this.local.set(name, g);
        this.localAllocs.set(name, this.ctx.mem.alloc('grads', 'device', 4 * g.size, name));
      }
    }
  }

  async complete(step: number): Promise<void> {
    const { part } = this.ctx;
    const missing = part.params.filter((s) => !this.local.has(s.name)).map((s) => s.name);
    if (missing.length > 0) {
      await this.shard.abort();
      this.dropLocal();
      throw new StrategyError(
        `finishStep at step ${step}: no gradient for ${missing.map((n) => `"${n}"`).join(', ')}, ` +
          "expected every parameter's gradient from forwardBackward",
      );
    }
    this.shard.open();
    for (let gi = part.groups.length - 1; gi >= 0; gi--) {
      const grp = part.groups[gi];
      if (grp.params.length === 0) continue;
      const named: NamedTensors = {};
      for (const n of grp.params) {
        named[n] = this.local.get(n)!;
        this.local.delete(n);
        this.ctx.mem.free(this.localAllocs.get(n)!);
        this.localAllocs.delete(n);
      }
      this.shard.reduceGroup(gi, named);
    }
  }

  wait(): Promise<Float32Array> {
    return this.shard.wait();
  }

  reset(): void {
    this.shard.reset();
    this.dropLocal();
  }

  async dispose(): Promise<void> {
    await this.shard.abort();
    this.dropLocal();
  }

  private dropLocal(): void {
    for (const t of this.local.values()) t.dispose();
    this.local.clear();
    for (const a of this.localAllocs.values()) this.ctx.mem.free(a);
    this.localAllocs.clear();
  }
}
