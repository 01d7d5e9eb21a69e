// Test helpers for running blocks outside a strategy: a ParamSource of resident tensors by name,
// and a GradSink that sums every gradient it gets by name (micro-batches, or stages, added up).
import type * as tf from '@tensorflow/tfjs-core';
import type { GradSink, ParamSource } from '../src/engine-contract.ts';
import type { BlockModel, NamedTensors } from '../src/model.ts';

export class MapSource implements ParamSource {
  constructor(
    private readonly model: BlockModel,
    private readonly tensors: ReadonlyMap<string, tf.Tensor>,
    readonly recomputeActivations = false,
  ) {}
  acquire(block: number): NamedTensors {
    return Object.fromEntries(this.model.blocks[block]!.params.map((p) => [p.name, this.tensors.get(p.name)!]));
  }
  release(): void {}
}

export class SumSink implements GradSink {
  readonly grads = new Map<string, Float32Array>();
  async onBlockGrads(_block: number, grads: NamedTensors): Promise<void> {
    for (const [name, g] of Object.entries(grads)) {
      const v = (await g.data()) as Float32Array;
      g.dispose();
      const sum = this.grads.get(name);
      if (sum) sum.forEach((_, i) => (sum[i] += v[i]!));
      else this.grads.set(name, v.slice());
    }
  }
}
