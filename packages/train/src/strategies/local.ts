// LocalStrategy: one process, everything resident on the device. Parameters are plain tensors
// handed to the engine as they are; gradients are summed as the engine emits them; the step is
// device AdamW (optim/adamw.ts) with optional global-norm clipping. It is the reference the
// distributed strategies must match, so it does the plainest possible thing.
import * as tf from '@tensorflow/tfjs-core';
import { uniqueParams, paramCount, type BlockModel, type NamedTensors, type ParamSpec } from '../model.ts';
import type { Phase } from '../engine.ts';
import { adamwUpdate, decays, DEFAULT_ADAMW, type AdamWConfig } from '../optim/adamw.ts';
import { MemoryTracker, type Allocation } from '../memory.ts';
import { StrategyError, type FinishStepOptions, type MemoryReport, type ShardState, type StepStats, type Strategy } from '../strategy.ts';

export interface LocalStrategyOptions {
  adamw?: Partial<AdamWConfig>;
}

/**
 * Squared global L2 norm of a set of gradients: per-tensor float32 sums read back in one transfer
 * (one device sync, not one per tensor) and added in float64.
 */
export async function globalSquaredNorm(grads: Iterable<tf.Tensor>): Promise<number> {
  const list = [...grads];
  if (list.length === 0) return 0;
  const sums = tf.tidy(() => tf.stack(list.map((g) => tf.sum(tf.square(g)))));
  const values = await sums.data();
  sums.dispose();
  let total = 0;
  for (const v of values) total += v;
  return total;
}

/** torch.nn.utils.clip_grad_norm_: the factor gradients are multiplied by (1 when under the limit). */
export function clipCoefficient(norm: number, maxNorm: number | undefined): number {
  if (!maxNorm || maxNorm <= 0) return 1;
  return Math.min(1, maxNorm / (norm + 1e-6));
}

export class LocalStrategy implements Strategy {
  readonly name = 'local';
  /** Parameters stay resident, so the engine keeps each block's forward for backward. */
  readonly recomputeActivations = false;
  private readonly cfg: AdamWConfig;
  private model?: BlockModel;
  private specs: ParamSpec[] = [];
  private params = new Map<string, tf.Tensor>();
  private grads = new Map<string, tf.Tensor>();
  private m = new Map<string, tf.Tensor>();
  private v = new Map<string, tf.Tensor>();
  private t = 0;
  private readonly mem = new MemoryTracker();
  private readonly gradAlloc = new Map<string, Allocation>();

  constructor(opts: LocalStrategyOptions = {}) {
    this.cfg = { ...DEFAULT_ADAMW, ...opts.adamw };
  }

  async setup(model: BlockModel, initialParams: Map<string, Float32Array>): Promise<void> {
    this.model = model;
    this.specs = uniqueParams(model);
    for (const spec of this.specs) {
      const init = initialParams.get(spec.name);
      const n = paramCount(spec);
      if (!init) throw new StrategyError(`initial parameters lack "${spec.name}", expected ${n} values of shape [${spec.shape}]`);
      if (init.length !== n) throw new StrategyError(`initial "${spec.name}" has ${init.length} values, expected ${n} (shape [${spec.shape}])`);
      this.params.set(spec.name, tf.tensor(init, spec.shape, 'float32'));
      this.m.set(spec.name, tf.zeros(spec.shape));
      this.v.set(spec.name, tf.zeros(spec.shape));
      this.mem.alloc('params', 'device', 4 * n, spec.name);
      this.mem.alloc('optimizer', 'device', 8 * n, spec.name);
    }
  }

  acquire(block: number, _phase: Phase): NamedTensors {
    const model = this.requireModel();
    const out: NamedTensors = {};
    for (const p of model.blocks[block].params) out[p.name] = this.params.get(p.name)!;
    return out;
  }

  release(_block: number, _phase: Phase): void {}

  onBlockGrads(_block: number, grads: NamedTensors): void {
    for (const [name, g] of Object.entries(grads)) {
      const prev = this.grads.get(name);
      if (prev) {
        this.grads.set(name, tf.add(prev, g));
        prev.dispose();
        g.dispose();
      } else {
        this.grads.set(name, g);
        this.gradAlloc.set(name, this.mem.alloc('grads', 'device', 4 * g.size, name));
      }
    }
  }

  async finishStep(opts: FinishStepOptions): Promise<StepStats> {
    const start = performance.now();
    for (const spec of this.specs) {
      if (!this.grads.has(spec.name)) throw new StrategyError(`finishStep at step ${opts.step}: no gradient for "${spec.name}", expected one from forwardBackward`);
    }
    const scale = opts.gradScale ?? 1;
    if (scale !== 1) this.scaleGrads(scale);
    let gradNorm: number | undefined;
    if (opts.maxGradNorm && opts.maxGradNorm > 0) {
      gradNorm = Math.sqrt(await globalSquaredNorm(this.grads.values()));
      const coef = clipCoefficient(gradNorm, opts.maxGradNorm);
      if (coef < 1) this.scaleGrads(coef);
    }
    this.t += 1;
    for (const spec of this.specs) {
      const name = spec.name;
      const r = adamwUpdate(this.cfg, this.params.get(name)!, this.grads.get(name)!, { m: this.m.get(name)!, v: this.v.get(name)! }, opts.lr, this.t, decays(spec.shape));
      this.params.get(name)!.dispose();
      this.m.get(name)!.dispose();
      this.v.get(name)!.dispose();
      this.grads.get(name)!.dispose();
      this.params.set(name, r.param);
      this.m.set(name, r.m);
      this.v.set(name, r.v);
    }
    this.grads.clear();
    for (const a of this.gradAlloc.values()) this.mem.free(a);
    this.gradAlloc.clear();
    // Make the update complete before timing stops (backends run kernels lazily).
    const last = this.params.get(this.specs[this.specs.length - 1].name);
    if (last) await last.data();
    return { commMs: 0, optimMs: performance.now() - start, gradNorm };
  }

  async fullParams(): Promise<Map<string, Float32Array>> {
    const out = new Map<string, Float32Array>();
    for (const spec of this.specs) out.set(spec.name, (await this.params.get(spec.name)!.data()) as Float32Array);
    return out;
  }

  memory(): MemoryReport {
    // Peaks since the last report: gradients exist only between backward and the update.
    const report = this.mem.peaks();
    this.mem.resetPeak();
    return report;
  }

  async saveState(): Promise<ShardState> {
    const arrays = new Map<string, Float32Array>();
    for (const spec of this.specs) {
      arrays.set(`param/${spec.name}`, (await this.params.get(spec.name)!.data()) as Float32Array);
      arrays.set(`m/${spec.name}`, (await this.m.get(spec.name)!.data()) as Float32Array);
      arrays.set(`v/${spec.name}`, (await this.v.get(spec.name)!.data()) as Float32Array);
    }
    return { meta: { strategy: this.name, t: this.t, adamw: { ...this.cfg } }, arrays };
  }

  async loadState(state: ShardState): Promise<void> {
    if (state.meta.strategy !== this.name) throw new StrategyError(`checkpoint shard is for strategy "${String(state.meta.strategy)}", expected "${this.name}"`);
    const t = state.meta.t;
    if (typeof t !== 'number' || !Number.isInteger(t) || t < 0) throw new StrategyError(`checkpoint optimizer step ${String(t)} is invalid, expected an integer >= 0`);
    for (const spec of this.specs) {
      for (const [prefix, map] of [['param', this.params], ['m', this.m], ['v', this.v]] as const) {
        const a = state.arrays.get(`${prefix}/${spec.name}`);
        if (!a || a.length !== paramCount(spec)) throw new StrategyError(`checkpoint lacks ${prefix}/${spec.name} with ${paramCount(spec)} values (got ${a?.length ?? 'none'})`);
        map.get(spec.name)?.dispose();
        map.set(spec.name, tf.tensor(a, spec.shape, 'float32'));
      }
    }
    this.t = t;
  }

  async dispose(): Promise<void> {
    for (const map of [this.params, this.grads, this.m, this.v]) {
      for (const t of map.values()) t.dispose();
      map.clear();
    }
  }

  private scaleGrads(factor: number): void {
    for (const [name, g] of this.grads) {
      this.grads.set(name, tf.mul(g, factor));
      g.dispose();
    }
  }

  private requireModel(): BlockModel {
    if (!this.model) throw new StrategyError('LocalStrategy used before setup(model, params)');
    return this.model;
  }
}
