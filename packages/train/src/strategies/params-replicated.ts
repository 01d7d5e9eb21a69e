// Replicated parameters: every parameter resident as one device tensor on every rank, handed to
// the engine as it is (acquire/release cost nothing, and the engine keeps each block's forward
// for backward instead of recomputing it). Whoever updates a parameter replaces its tensor: the
// device AdamW of a replicated strategy, or the all-gather of ZeRO-1/2 after the shard update.
//
// Ranks must start identical. fromBroadcast sends rank 0's values to every rank in one
// broadcast, so ranks that initialised differently still agree, and a different model on some
// rank shows up as a size mismatch.
import * as tf from '@tensorflow/tfjs-core';
import { paramCount, uniqueParams, type BlockModel, type NamedTensors, type ParamSpec } from '../model.ts';
import type { MemoryTracker } from '../memory.ts';
import { StrategyError } from '../strategy.ts';

/** Throws naming the first parameter whose initial value is missing or of the wrong size. */
export function checkInitialParams(specs: readonly ParamSpec[], initialParams: Map<string, Float32Array>): void {
  for (const spec of specs) {
    const init = initialParams.get(spec.name);
    const n = paramCount(spec);
    if (!init) {
      throw new StrategyError(`initial parameters lack "${spec.name}", expected ${n} values of shape [${spec.shape}]`);
    }
    if (init.length !== n) {
      throw new StrategyError(
        `initial "${spec.name}" has ${init.length} values, expected ${n} (shape [${spec.shape}])`,
      );
    }
  }
}

export class ReplicatedParams {
  /** Resident: the tensors a forward read are still valid in backward. */
  readonly recomputeActivations = false;
  readonly specs: readonly ParamSpec[];
  private readonly tensors = new Map<string, tf.Tensor>();

  private constructor(
    private readonly model: BlockModel,
    mem: MemoryTracker,
  ) {
    this.specs = uniqueParams(model);
    mem.alloc('params', 'device', 4 * this.specs.reduce((n, s) => n + paramCount(s), 0), 'replicated parameters');
  }

  /** Tensors installed later with set() (ZeRO-1/2 install them from the partition's groups). */
  static empty(model: BlockModel, mem: MemoryTracker): ReplicatedParams {
    return new ReplicatedParams(model, mem);
  }

  /** One process: each tensor is made from the caller's array as it is. */
  static fromValues(model: BlockModel, values: Map<string, Float32Array>, mem: MemoryTracker): ReplicatedParams {
    checkInitialParams(uniqueParams(model), values);
    const p = new ReplicatedParams(model, mem);
    for (const spec of p.specs) p.set(spec.name, tf.tensor(values.get(spec.name)!, spec.shape, 'float32'));
    return p;
  }

  /** Rank 0's values on every rank: one broadcast of them all, flat, then a tensor per parameter. */
  static async fromBroadcast(
    model: BlockModel,
    initialParams: Map<string, Float32Array>,
    comm: { worldSize: number; broadcast(buf: Float32Array, root: number): Promise<unknown> },
    mem: MemoryTracker,
  ): Promise<ReplicatedParams> {
    const specs = uniqueParams(model);
    checkInitialParams(specs, initialParams);
    const flat = new Float32Array(specs.reduce((n, s) => n + paramCount(s), 0));
    const views = new Map<string, Float32Array>();
    let off = 0;
    for (const spec of specs) {
      const n = paramCount(spec);
      flat.set(initialParams.get(spec.name)!, off);
      views.set(spec.name, flat.subarray(off, off + n));
      off += n;
    }
    if (comm.worldSize > 1) await comm.broadcast(flat, 0);
    return ReplicatedParams.fromValues(model, views, mem);
  }

  /** The parameter's current tensor. */
  get(name: string): tf.Tensor {
    const t = this.tensors.get(name);
    if (!t) throw new StrategyError(`no parameter "${name}", expected one of the model's ${this.specs.length}`);
    return t;
  }

  /** Replaces the parameter's tensor (the previous one is freed). */
  set(name: string, t: tf.Tensor): void {
    this.tensors.get(name)?.dispose();
    this.tensors.set(name, t);
  }

  acquire(block: number): NamedTensors {
    const out: NamedTensors = {};
    for (const p of this.model.blocks[block].params) out[p.name] = this.tensors.get(p.name)!;
    return out;
  }

  release(): void {}

  /** Every parameter's value, read back from the device. */
  async read(): Promise<Map<string, Float32Array>> {
    const out = new Map<string, Float32Array>();
    for (const spec of this.specs) out.set(spec.name, (await this.get(spec.name).data()) as Float32Array);
    return out;
  }

  dispose(): void {
    for (const t of this.tensors.values()) t.dispose();
    this.tensors.clear();
  }
}
