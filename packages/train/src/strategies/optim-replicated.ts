// The optimizer of a replicated strategy, on the device: AdamW (optim/adamw.ts) over every
// parameter, with its moments as device tensors, after scaling and global-norm clipping of the
// complete gradient. Every rank applies the same update to the same averaged gradient, so
// replicated ranks stay bit-identical without ever sending parameters.
import * as tf from '@tensorflow/tfjs-core';
import { paramCount, type ParamSpec } from '../model.ts';
import { adamwUpdate, decays, type AdamWConfig } from '../optim/adamw.ts';
import type { MemoryTracker } from '../memory.ts';
import { StrategyError, type FinishStepOptions } from '../strategy.ts';
import { clipCoefficient, globalSquaredNorm } from './clip.ts';
import type { DeviceGrads } from './grads-device.ts';
import type { ReplicatedParams } from './params-replicated.ts';

export class ReplicatedAdamW {
  private readonly m = new Map<string, tf.Tensor>();
  private readonly v = new Map<string, tf.Tensor>();
  /** Optimizer steps taken (AdamW's t). */
  t = 0;

  constructor(
    private readonly specs: readonly ParamSpec[],
    readonly cfg: AdamWConfig,
    mem: MemoryTracker,
  ) {
    for (const spec of specs) {
      this.m.set(spec.name, tf.zeros(spec.shape));
      this.v.set(spec.name, tf.zeros(spec.shape));
      mem.alloc('optimizer', 'device', 8 * paramCount(spec), spec.name);
    }
  }

  /**
   * One step of every parameter with its gradient; consumes the gradients. Returns the global
   * gradient norm before clipping, when clipping was asked for.
   */
  async step(params: ReplicatedParams, grads: DeviceGrads, opts: FinishStepOptions): Promise<number | undefined> {
    for (const spec of this.specs) {
      if (!grads.has(spec.name)) {
        throw new StrategyError(
          `finishStep at step ${opts.step}: no gradient for "${spec.name}", expected one from forwardBackward`,
        );
      }
    }
    const scale = opts.gradScale ?? 1;
    if (scale !== 1) grads.scale(scale);
    let gradNorm: number | undefined;
    if (opts.maxGradNorm && opts.maxGradNorm > 0) {
      gradNorm = Math.sqrt(await globalSquaredNorm(grads.values()));
      const coef = clipCoefficient(gradNorm, opts.maxGradNorm);
      if (coef < 1) grads.scale(coef);
    }
    this.t += 1;
    for (const spec of this.specs) this.update(spec, params, grads.get(spec.name)!, opts.lr);
    grads.clear();
    // Make the update complete before timing stops (backends run kernels lazily).
    const last = this.specs[this.specs.length - 1];
    if (last) await params.get(last.name).data();
    return gradNorm;
  }

  private update(spec: ParamSpec, params: ReplicatedParams, g: tf.Tensor, lr: number): void {
    const name = spec.name;
    const slot = { m: this.m.get(name)!, v: this.v.get(name)! };
    const r = adamwUpdate(this.cfg, params.get(name), g, slot, lr, this.t, decays(spec.shape));
    params.set(name, r.param);
    slot.m.dispose();
    slot.v.dispose();
    g.dispose();
    this.m.set(name, r.m);
    this.v.set(name, r.v);
  }

  /** The moments of a parameter, read back (checkpoints). */
  async moments(name: string): Promise<{ m: Float32Array; v: Float32Array }> {
    return {
      m: (await this.m.get(name)!.data()) as Float32Array,
      v: (await this.v.get(name)!.data()) as Float32Array,
    };
  }

  /** Restores a parameter's moments. */
  loadMoments(spec: ParamSpec, m: Float32Array, v: Float32Array): void {
    this.m.get(spec.name)?.dispose();
    this.m.set(spec.name, tf.tensor(m, spec.shape, 'float32'));
    this.v.get(spec.name)?.dispose();
    this.v.set(spec.name, tf.tensor(v, spec.shape, 'float32'));
  }

  dispose(): void {
    for (const map of [this.m, this.v]) {
      for (const t of map.values()) t.dispose();
      map.clear();
    }
  }
}
