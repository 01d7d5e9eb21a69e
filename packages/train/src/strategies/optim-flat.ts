// AdamW of a replicated strategy as one fused update of the whole flat group, where the backend
// runs our WGSL programs (WebGPU). The parameters and both moments live packed in one device
// tensor [p | m | v] laid out by FlatLayout (decaying parameters first); a step is
//   flatten the gradient (one concat, or one upload where the reducer has it on the host)
//   its scaled norm and clip coefficient on the device (two dispatches, webgpu-kernels/norm.ts)
//   the update of every element (one dispatch, webgpu-kernels/adamw.ts)
//   the parameter tensors the model reads, sliced from the new state (one copy each: tfjs on
//   WebGPU has no views)
// instead of about a dozen kernels per parameter tensor, and nothing is read back: the norm and
// the non-finite flag go out in the step's readout, read once with the loss. The arithmetic is
// optim/adamw.ts's, so this and the tfjs-ops form agree to float32 rounding.
//
// A gated step (opts.gateNonFinite) whose gradient is not finite leaves the state as it was on
// the device; the step count, advanced when the update was issued, is taken back when the
// readout says so, which is before the next step is issued (the trainer awaits it).
import * as tf from '@tensorflow/tfjs-core';
import { NORM_STATS, webgpuFlatAdamW, webgpuScaledNorm } from '@zeroring/backend';
import { adamwScalars, type AdamWConfig } from '../optim/adamw.ts';
import type { MemoryTracker } from '../memory.ts';
import type { StepReadout } from '../step-readout.ts';
import { StrategyError, type FinishStepOptions, type StepLater } from '../strategy.ts';
import { clipCoefficient } from './clip.ts';
import { FlatLayout } from './flat-layout.ts';
import type { DeviceGrads } from './grads-device.ts';
import { requireGrads, type ParamState, type ReplicatedOptimizer } from './optim-replicated.ts';
import type { ReplicatedParams } from './params-replicated.ts';

/** The fused AdamW kernel's scalars at step t (1-based); which elements decay comes separately. */
export function flatAdamWScalars(cfg: AdamWConfig, lr: number, t: number) {
  const s = adamwScalars(cfg, lr, t, true);
  const { beta1, beta2, eps } = cfg;
  return { decayFactor: s.decayFactor, beta1, beta2, eps, bc2Sqrt: s.bc2Sqrt, stepSize: s.stepSize };
}

/**
 * The norm statistics with the norm and clip coefficient of the whole model, when other pipeline
 * stages hold the rest of it: the one case where this optimizer reads its norm back before the update.
 */
async function normAcross(
  stats: tf.Tensor,
  maxNorm: number,
  across: (squared: number) => Promise<number>,
): Promise<tf.Tensor> {
  const v = Float32Array.from(await stats.data());
  stats.dispose();
  const squared = await across(v[NORM_STATS.squared]!);
  v[NORM_STATS.squared] = squared;
  v[NORM_STATS.norm] = Math.sqrt(squared);
  v[NORM_STATS.coef] = clipCoefficient(v[NORM_STATS.norm]!, maxNorm);
  return tf.tensor(v);
}

export class FlatAdamW implements ReplicatedOptimizer {
  t = 0;
  readonly gatesNonFinite = true;
  readonly layout: FlatLayout;
  /** [parameters | m | v], each in layout order. */
  private state: tf.Tensor;

  /** Takes the parameters' current tensors as the group's start, moments zero. */
  constructor(
    params: ReplicatedParams,
    readonly cfg: AdamWConfig,
    mem: MemoryTracker,
  ) {
    this.layout = new FlatLayout(params.specs);
    const n = this.layout.size;
    this.state = tf.tidy(() =>
      tf.concat([...this.layout.slots.map((s) => tf.reshape(params.get(s.name), [-1])), tf.zeros([2 * n])]),
    );
    this.publish(params);
    // The per-parameter tensors are copies of the group's first third: parameters count twice.
    mem.alloc('params', 'device', 4 * n, 'flat parameter group');
    mem.alloc('optimizer', 'device', 8 * n, 'adam m, v (flat group)');
  }

  async step(
    params: ReplicatedParams,
    grads: DeviceGrads,
    opts: FinishStepOptions,
    readout: StepReadout,
  ): Promise<{ later: Promise<StepLater> }> {
    requireGrads(params.specs, grads, opts.step);
    const flat = grads.flatten(this.layout);
    grads.clear();
    const clip = (opts.maxGradNorm ?? 0) > 0;
    const gate = opts.gateNonFinite === true;
    const gradScale = opts.gradScale ?? 1;
    let stats = webgpuScaledNorm(flat, gradScale, clip ? opts.maxGradNorm! : 0);
    if (clip && opts.squaredNormAcross) stats = await normAcross(stats, opts.maxGradNorm!, opts.squaredNormAcross);
    this.t += 1;
    const next = webgpuFlatAdamW(this.state, flat, stats, {
      ...flatAdamWScalars(this.cfg, opts.lr, this.t),
      decayEnd: this.layout.decayEnd,
      gradScale,
      clip,
      gate,
    });
    flat.dispose();
    this.state.dispose();
    this.state = next;
    this.publish(params);
    const later = readout.add(stats).then((v): StepLater => {
      const skipped = gate && v[NORM_STATS.finite] === 0;
      if (skipped) this.t -= 1;
      return { gradNorm: clip ? v[NORM_STATS.norm] : undefined, skipped };
    });
    return { later };
  }

  async snapshot(): Promise<Map<string, ParamState>> {
    const all = (await this.state.data()) as Float32Array;
    const n = this.layout.size;
    const out = new Map<string, ParamState>();
    for (const s of this.layout.slots) {
      const at = (k: number): Float32Array => all.slice(k * n + s.offset, k * n + s.offset + s.size);
      out.set(s.name, { param: at(0), m: at(1), v: at(2) });
    }
    return out;
  }

  restore(params: ReplicatedParams, state: ReadonlyMap<string, ParamState>, t: number): void {
    const n = this.layout.size;
    const all = new Float32Array(3 * n);
    for (const s of this.layout.slots) {
      const p = state.get(s.name);
      if (!p) throw new StrategyError(`no state for parameter "${s.name}" to restore`);
      all.set(p.param, s.offset);
      all.set(p.m, n + s.offset);
      all.set(p.v, 2 * n + s.offset);
    }
    this.state.dispose();
    this.state = tf.tensor1d(all, 'float32');
    this.publish(params);
    this.t = t;
  }

  dispose(): void {
    this.state.dispose();
  }

  /** The tensors the model reads: each parameter's range of the state, in its shape. */
  private publish(params: ReplicatedParams): void {
    for (const s of this.layout.slots) {
      params.set(
        s.name,
        tf.tidy(() => tf.reshape(tf.slice(this.state, [s.offset], [s.size]), s.shape as number[])),
      );
    }
  }
}
