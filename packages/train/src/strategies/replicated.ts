// ReplicatedStrategy: parameters replicated on every rank and an optimizer that updates every
// parameter on the device (params-replicated.ts, optim-replicated.ts); what varies is how gradients
// are reduced (a FullGradReducer, parts.ts): none for LocalStrategy, a bucketed all-reduce for
// DDPStrategy. Checkpoints hold every parameter and its moments by name plus the step count, so a
// strategy restores bit for bit.
// Details: docs/internals.md#replicated-strategies
import * as tf from '@tensorflow/tfjs-core';
import type { Phase } from '../engine.ts';
import { paramCount, type BlockModel, type NamedTensors } from '../model.ts';
import { DEFAULT_ADAMW, type AdamWConfig } from '../optim/adamw.ts';
import { MemoryTracker } from '../memory.ts';
import {
  StrategyError,
  type FinishStepOptions,
  type MemoryReport,
  type ShardState,
  type StepStats,
  type Strategy,
} from '../strategy.ts';
import { DeviceGrads } from './grads-device.ts';
import { ReplicatedAdamW } from './optim-replicated.ts';
import { ReplicatedParams } from './params-replicated.ts';
import type { FullGradReducer } from './parts.ts';

export interface ReplicatedParts {
  /** How gradients are reduced. */
  grads: FullGradReducer;
  /** Ranks to start identical (rank 0's values broadcast); none for one process. */
  broadcast?: { worldSize: number; broadcast(buf: Float32Array, root: number): Promise<unknown> };
  adamw?: Partial<AdamWConfig>;
}

interface Setup {
  params: ReplicatedParams;
  opt: ReplicatedAdamW;
}

export abstract class ReplicatedStrategy implements Strategy {
  abstract readonly name: string;
  /** Parameters stay resident, so the engine keeps each block's forward for backward. */
  readonly recomputeActivations = false;
  protected readonly reducer: FullGradReducer;
  private readonly cfg: AdamWConfig;
  private readonly mem = new MemoryTracker();
  private readonly grads = new DeviceGrads(this.mem);
  private parts?: Setup;

  constructor(private readonly composition: ReplicatedParts) {
    this.reducer = composition.grads;
    this.cfg = { ...DEFAULT_ADAMW, ...composition.adamw };
  }

  async setup(model: BlockModel, initialParams: Map<string, Float32Array>): Promise<void> {
    const { broadcast } = this.composition;
    const params = broadcast
      ? await ReplicatedParams.fromBroadcast(model, initialParams, broadcast, this.mem)
      : ReplicatedParams.fromValues(model, initialParams, this.mem);
    this.reducer.setup(model);
    this.parts = { params, opt: new ReplicatedAdamW(params.specs, this.cfg, this.mem) };
  }

  acquire(block: number, _phase: Phase): NamedTensors {
    return this.require().params.acquire(block);
  }

  release(_block: number, _phase: Phase): void {}

  onBlockGrads(block: number, grads: NamedTensors): void {
    this.reducer.onBlockGrads(block, grads, this.grads);
  }

  async finishStep(opts: FinishStepOptions): Promise<StepStats> {
    const { params, opt } = this.require();
    const commMs = await this.reducer.wait(opts.step);
    const start = performance.now();
    this.reducer.take(this.grads);
    const gradNorm = await opt.step(params, this.grads, opts);
    this.reducer.afterStep();
    return { commMs, optimMs: performance.now() - start, gradNorm };
  }

  fullParams(): Promise<Map<string, Float32Array>> {
    return this.require().params.read();
  }

  memory(): MemoryReport {
    // Peaks since the last report: gradients exist only between backward and the update.
    const report = this.mem.peaks();
    this.mem.resetPeak();
    this.reducer.report(report);
    return report;
  }

  /** What a checkpoint records besides the strategy, step count and AdamW settings. */
  protected stateMeta(): Record<string, unknown> {
    return {};
  }

  async saveState(): Promise<ShardState> {
    const { params, opt } = this.require();
    const arrays = new Map<string, Float32Array>();
    for (const spec of params.specs) {
      arrays.set(`param/${spec.name}`, (await params.get(spec.name).data()) as Float32Array);
      const { m, v } = await opt.moments(spec.name);
      arrays.set(`m/${spec.name}`, m);
      arrays.set(`v/${spec.name}`, v);
    }
    return { meta: { strategy: this.name, t: opt.t, adamw: { ...this.cfg }, ...this.stateMeta() }, arrays };
  }

  async loadState(state: ShardState): Promise<void> {
    const { params, opt } = this.require();
    const { meta } = state;
    if (meta.strategy !== this.name) {
      throw new StrategyError(`checkpoint shard is for strategy "${String(meta.strategy)}", expected "${this.name}"`);
    }
    const t = meta.t;
    if (typeof t !== 'number' || !Number.isInteger(t) || t < 0) {
      throw new StrategyError(`checkpoint optimizer step ${String(t)} is invalid, expected an integer >= 0`);
    }
    for (const spec of params.specs) {
      const [param, m, v] = ['param', 'm', 'v'].map((prefix) => {
        const a = state.arrays.get(`${prefix}/${spec.name}`);
        const n = paramCount(spec);
        if (!a || a.length !== n) {
          const got = a?.length ?? 'none';
          throw new StrategyError(`checkpoint lacks ${prefix}/${spec.name} with ${n} values (got ${got})`);
        }
        return a;
      });
      params.set(spec.name, tf.tensor(param, spec.shape, 'float32'));
      opt.loadMoments(spec, m, v);
    }
    opt.t = t;
  }

  async dispose(): Promise<void> {
    this.grads.clear();
    await this.reducer.dispose();
    this.parts?.params.dispose();
    this.parts?.opt.dispose();
  }

  private require(): Setup {
    if (!this.parts) throw new StrategyError(`${this.name} strategy used before setup(model, params)`);
    return this.parts;
  }
}
