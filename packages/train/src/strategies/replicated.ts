// ReplicatedStrategy: parameters replicated on every rank and an optimizer that updates every
// parameter on the device (params-replicated.ts, optim-replicated.ts); what varies is how gradients
// are reduced (a FullGradReducer, parts.ts): none for LocalStrategy, a bucketed all-reduce for
// DDPStrategy. The optimizer is FlatAdamW (one fused WGSL update of the flat group, optim-flat.ts)
// on WebGPU and the tfjs-ops ReplicatedAdamW elsewhere; with a readout in the finishStep options
// nothing is read back here (the gradient norm comes in StepStats.later). Its saved state is every
// parameter and its moments plus the step count, loadable by any strategy at any world size.
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
import { StepReadout } from '../step-readout.ts';
import { checkSourceModel, concatArrays, STATE_KINDS, wholeParamRequests, type StateSource } from '../state-source.ts';
import { DeviceGrads } from './grads-device.ts';
import { FlatAdamW } from './optim-flat.ts';
import { ReplicatedAdamW, type ParamState, type ReplicatedOptimizer } from './optim-replicated.ts';
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
  opt: ReplicatedOptimizer;
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
    const opt =
      tf.getBackend() === 'webgpu'
        ? new FlatAdamW(params, this.cfg, this.mem)
        : new ReplicatedAdamW(params.specs, this.cfg, this.mem);
    if (opt instanceof FlatAdamW) this.grads.flatLayout = opt.layout;
    this.parts = { params, opt };
  }

  /** The fused WGSL optimizer skips a non-finite update on the device; the tfjs-ops one cannot. */
  get gatesNonFinite(): boolean {
    return this.parts?.opt.gatesNonFinite ?? false;
  }

  acquire(block: number, _phase: Phase): NamedTensors {
    return this.require().params.acquire(block);
  }

  release(_block: number, _phase: Phase): void {}

  onBlockGrads(block: number, grads: NamedTensors): void {
    this.reducer.onBlockGrads(block, grads, this.grads);
  }

  issued(): Promise<void> {
    return this.reducer.issued();
  }

  async finishStep(opts: FinishStepOptions): Promise<StepStats> {
    const { params, opt } = this.require();
    const commMs = await this.reducer.wait(opts.step);
    const localNonFinite = this.reducer.localNonFinite();
    const start = performance.now();
    this.reducer.take(this.grads);
    const own = opts.readout ? undefined : new StepReadout();
    const readout = opts.readout ?? own!;
    try {
      const step = await opt.step(params, this.grads, { ...opts, readout }, readout);
      const later = step.later.then((l) => ({ ...l, localNonFinite: localNonFinite ?? l.skipped }));
      this.reducer.afterStep();
      if (!own) return { commMs, optimMs: performance.now() - start, later };
      await own.flush();
      const { gradNorm } = await later;
      return { commMs, optimMs: performance.now() - start, gradNorm };
    } finally {
      own?.dispose();
    }
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

  /**
   * Every parameter whole, with its moments: marked replicated, so a checkpoint keeps only this
   * rank's even share of it (every rank holds the same values).
   */
  async saveState(): Promise<ShardState> {
    const { params, opt } = this.require();
    const state = await opt.snapshot(params);
    const pieces = params.specs.map((s) => ({ name: s.name, offset: 0, length: paramCount(s) }));
    const arrays = new Map(
      STATE_KINDS.map((kind) => [kind, concatArrays(params.specs.map((s) => state.get(s.name)![kind]))]),
    );
    const meta = { strategy: this.name, t: opt.t, adamw: { ...this.cfg }, ...this.stateMeta() };
    return { meta: { ...meta, replicated: true, params: params.specs, pieces }, arrays };
  }

  async loadState(source: StateSource): Promise<void> {
    const { params, opt } = this.require();
    checkSourceModel(source, params.specs);
    const got = await source.read(wholeParamRequests(params.specs));
    const values = new Map<string, ParamState>();
    params.specs.forEach((spec, i) =>
      values.set(spec.name, { param: got[3 * i], m: got[3 * i + 1], v: got[3 * i + 2] }),
    );
    opt.restore(params, values, source.t);
    this.reducer.resumeAt?.(source.t);
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
