// The optimizer of a replicated strategy, on the device: AdamW (optim/adamw.ts) over every
// parameter after scaling and global-norm clipping of the complete gradient. Every rank applies
// the same update to the same averaged gradient, so replicated ranks stay bit-identical without
// ever sending parameters.
//
// Two forms share one interface: FlatAdamW (optim-flat.ts), one fused WGSL update of the whole
// flat group where the backend runs our WGSL programs, and ReplicatedAdamW below, the tfjs-ops
// update per parameter tensor, with its moments as one tensor per parameter, on every other
// backend (cpu, wasm and tensorflow run kernels in order on the host, where a per-tensor update
// costs no dispatches, and it is bit for bit the host AdamW of optim/host-adamw.ts).
import * as tf from '@tensorflow/tfjs-core';
import { paramCount, type ParamSpec } from '../model.ts';
import { adamwUpdate, decays, type AdamWConfig } from '../optim/adamw.ts';
import type { MemoryTracker } from '../memory.ts';
import type { StepReadout } from '../step-readout.ts';
import { StrategyError, type FinishStepOptions, type StepLater } from '../strategy.ts';
import { clipCoefficient, globalSquaredNorm } from './clip.ts';
import type { DeviceGrads } from './grads-device.ts';
import type { ReplicatedParams } from './params-replicated.ts';

/** A parameter's value and moments, as checkpoints hold them. */
export interface ParamState {
  param: Float32Array;
  m: Float32Array;
  v: Float32Array;
}

export interface ReplicatedOptimizer {
  /** Optimizer steps taken (AdamW's t). */
  t: number;
  /** Whether step() honours opts.gateNonFinite. */
  readonly gatesNonFinite: boolean;
  /**
   * One step of every parameter with its gradient; consumes the gradients. Returns once the
   * update is issued; `later` settles when `readout` has been flushed.
   */
  step(
    params: ReplicatedParams,
    grads: DeviceGrads,
    opts: FinishStepOptions,
    readout: StepReadout,
  ): Promise<{ later: Promise<StepLater> }>;
  /** Every parameter's value and moments, read back (checkpoints). */
  snapshot(params: ReplicatedParams): Promise<Map<string, ParamState>>;
  /** Restores every parameter's value and moments, and the step count. */
  restore(params: ReplicatedParams, state: ReadonlyMap<string, ParamState>, t: number): void;
  dispose(): void;
}

/** Throws naming the first parameter without a gradient. */
export function requireGrads(specs: readonly ParamSpec[], grads: DeviceGrads, step: number): void {
  for (const spec of specs) {
    if (!grads.has(spec.name)) {
      throw new StrategyError(
        `finishStep at step ${step}: no gradient for "${spec.name}", expected one from forwardBackward`,
      );
    }
  }
}

export class ReplicatedAdamW implements ReplicatedOptimizer {
  private readonly m = new Map<string, tf.Tensor>();
  private readonly v = new Map<string, tf.Tensor>();
  t = 0;
  readonly gatesNonFinite = false;

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
   * The clip norm is read back here, where the update needs it: on the host backends this form
   * runs on, a read-back waits for nothing. Nothing goes through the readout.
   */
  async step(
    params: ReplicatedParams,
    grads: DeviceGrads,
    opts: FinishStepOptions,
  ): Promise<{ later: Promise<StepLater> }> {
    requireGrads(this.specs, grads, opts.step);
    const scale = opts.gradScale ?? 1;
    if (scale !== 1) grads.scale(scale);
    let gradNorm: number | undefined;
    if (opts.maxGradNorm && opts.maxGradNorm > 0) {
      const squared = await globalSquaredNorm(grads.values());
      gradNorm = Math.sqrt(opts.squaredNormAcross ? await opts.squaredNormAcross(squared) : squared);
      const coef = clipCoefficient(gradNorm, opts.maxGradNorm);
      if (coef < 1) grads.scale(coef);
    }
    this.t += 1;
    for (const spec of this.specs) this.update(spec, params, grads.get(spec.name)!, opts.lr);
    grads.clear();
    return { later: Promise.resolve({ gradNorm, skipped: false }) };
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

  async snapshot(params: ReplicatedParams): Promise<Map<string, ParamState>> {
    const out = new Map<string, ParamState>();
    for (const spec of this.specs) {
      out.set(spec.name, {
        param: (await params.get(spec.name).data()) as Float32Array,
        m: (await this.m.get(spec.name)!.data()) as Float32Array,
        v: (await this.v.get(spec.name)!.data()) as Float32Array,
      });
    }
    return out;
  }

  restore(params: ReplicatedParams, state: ReadonlyMap<string, ParamState>, t: number): void {
    for (const spec of this.specs) {
      const s = state.get(spec.name)!;
      params.set(spec.name, tf.tensor(s.param, spec.shape, 'float32'));
      this.m.get(spec.name)?.dispose();
      this.m.set(spec.name, tf.tensor(s.m, spec.shape, 'float32'));
      this.v.get(spec.name)?.dispose();
      this.v.set(spec.name, tf.tensor(s.v, spec.shape, 'float32'));
    }
    this.t = t;
  }

  dispose(): void {
    for (const map of [this.m, this.v]) {
      for (const t of map.values()) t.dispose();
      map.clear();
    }
  }
}
