// ShardedStrategy: runs a ZeRO stage, a composition of a parameter placement, a gradient
// reduction and an optimizer of the shard (parts.ts; the stages are zero1.ts, zero2.ts, zero3.ts),
// over one flat partition (partition.ts) with every collective issued through one IssueQueue. The
// gradient and parameter shards are host arrays on every backend. Parameters agree with DDP to
// float rounding; a resumed run is bit-identical at the same N, and loads at any other N (state-source.ts).
// Details: docs/internals.md#sharded-strategies
import type { Phase } from '../engine.ts';
import { uniqueParams, type BlockModel, type NamedTensors } from '../model.ts';
import { DEFAULT_ADAMW, type AdamWConfig } from '../optim/adamw.ts';
import { FlatPartition } from '../partition.ts';
import { MemoryTracker } from '../memory.ts';
import {
  StrategyError,
  type FinishStepOptions,
  type MemoryReport,
  type ShardState,
  type StepStats,
  type Strategy,
} from '../strategy.ts';
import { scaleAndClipShard } from './clip.ts';
import { IssueQueue } from './issue-queue.ts';
import type { ShardOptimizer } from './optim-shard.ts';
import { checkInitialParams } from './params-replicated.ts';
import type { ShardComm, ShardContext, ShardedParams, ShardGradReducer, ZeroComposition } from './parts.ts';
import { checkSourceModel, concatArrays, STATE_KINDS, type StateSource } from '../state-source.ts';
import { ZERO1 } from './zero1.ts';
import { ZERO2 } from './zero2.ts';
import { ZERO3 } from './zero3.ts';

export type { ShardComm } from './parts.ts';

export type ZeroStage = 1 | 2 | 3;

export interface ShardedStrategyOptions {
  /** Optimizer state (and the shard's fp32 master params and grads) in host memory, CPU AdamW. */
  offload?: boolean;
  adamw?: Partial<AdamWConfig>;
}

const STAGES: Record<ZeroStage, ZeroComposition> = { 1: ZERO1, 2: ZERO2, 3: ZERO3 };

/** The parts, made at setup. */
interface Composed {
  ctx: ShardContext;
  params: ShardedParams;
  grads: ShardGradReducer;
  opt: ShardOptimizer;
}

export class ShardedStrategy implements Strategy {
  readonly name: string;
  readonly offload: boolean;
  readonly composition: ZeroComposition;
  readonly mem = new MemoryTracker();
  private readonly cfg: AdamWConfig;
  private readonly queue = new IssueQueue();
  private parts?: Composed;
  /** Optimizer steps taken (AdamW's t). */
  private t = 0;

  constructor(
    readonly comm: ShardComm,
    readonly stage: ZeroStage,
    opts: ShardedStrategyOptions = {},
  ) {
    const composition = STAGES[stage];
    if (!composition) throw new StrategyError(`ZeRO stage ${String(stage)} is invalid, expected 1, 2 or 3`);
    this.composition = composition;
    this.name = composition.name;
    this.offload = opts.offload ?? false;
    this.cfg = { ...DEFAULT_ADAMW, ...opts.adamw };
  }

  /** The flat partition (after setup). */
  get partition(): FlatPartition {
    return this.require().ctx.part;
  }

  /** Stage 3: gathers issued and acquires served by a prefetch that had already landed. */
  get gatherStats(): { gathers: number; acquires: number; prefetchHits: number } {
    return this.parts?.params.gatherStats ?? { gathers: 0, acquires: 0, prefetchHits: 0 };
  }

  /** Whether the parameter placement frees a block after use (ZeRO-3): backward then recomputes. */
  get recomputeActivations(): boolean {
    return this.composition.params.recomputeActivations;
  }

  /** The update runs on host shards after their read-back: a non-finite step is found before it. */
  readonly gatesNonFinite = false;

  async setup(model: BlockModel, initialParams: Map<string, Float32Array>): Promise<void> {
    checkInitialParams(uniqueParams(model), initialParams);
    const part = FlatPartition.fromModel(model, this.comm.worldSize);
    const ctx: ShardContext = { comm: this.comm, model, part, queue: this.queue, mem: this.mem };
    // One broadcast of rank 0's values: every rank starts identical (as DDP), and a different
    // model on some rank shows up as a size mismatch.
    const flat = part.flatten(initialParams);
    if (this.comm.worldSize > 1) await this.comm.broadcast(flat, 0);
    const { optimizer, grads, params } = this.composition;
    const placed = await (this.offload ? optimizer.host : optimizer.device)(ctx, flat, this.cfg);
    this.parts = {
      ctx,
      opt: placed.opt,
      grads: new grads(ctx, placed.gradBuffer),
      params: new params(ctx, flat, placed.master),
    };
  }

  acquire(block: number, phase: Phase): NamedTensors | Promise<NamedTensors> {
    return this.require().params.acquire(block, phase);
  }

  release(block: number, phase: Phase): void {
    this.require().params.release(block, phase);
  }

  onBlockGrads(block: number, grads: NamedTensors): void {
    this.require().grads.onBlockGrads(block, grads);
  }

  async finishStep(opts: FinishStepOptions): Promise<StepStats> {
    const { ctx, params, grads, opt } = this.require();
    const start = performance.now();
    await params.settle();
    await grads.complete(opts.step);
    const g = await grads.wait();
    let commMs = performance.now() - start;

    const t1 = performance.now();
    const gradNorm = await scaleAndClipShard(g, opts, ctx.comm, ctx.queue);
    this.t += 1;
    const updated = await params.update(opt, g, opts.lr, this.t);
    const optimMs = performance.now() - t1;

    const t2 = performance.now();
    await params.publish(updated);
    commMs += performance.now() - t2;
    grads.reset();
    return { commMs, optimMs, gradNorm };
  }

  fullParams(): Promise<Map<string, Float32Array>> {
    return this.require().params.fullParams();
  }

  memory(): MemoryReport {
    const report = this.mem.peaks();
    this.mem.resetPeak();
    return report;
  }

  /** This rank's pieces of the parameters, their moments, and the step count. */
  async saveState(): Promise<ShardState> {
    const { ctx, params, opt } = this.require();
    const shard = { param: await params.shardCopy(), ...(await opt.moments()) };
    const pieces = ctx.part.pieces(this.comm.rank);
    const cut = (a: Float32Array): Float32Array =>
      concatArrays(pieces.map((p) => a.subarray(p.shardOffset, p.shardOffset + p.length)));
    return {
      meta: {
        strategy: this.name,
        stage: this.stage,
        offload: this.offload,
        t: this.t,
        worldSize: this.comm.worldSize,
        rank: this.comm.rank,
        adamw: { ...this.cfg },
        params: ctx.part.params.map((p) => ({ name: p.name, shape: p.shape })),
        pieces: pieces.map((p) => ({ name: p.name, offset: p.paramOffset, length: p.length })),
      },
      arrays: new Map(STATE_KINDS.map((kind) => [kind, cut(shard[kind])])),
    };
  }

  /** Reads the ranges of this rank's shard, whatever world size and strategy saved them. */
  async loadState(source: StateSource): Promise<void> {
    const { ctx, params, opt } = this.require();
    checkSourceModel(source, ctx.part.params);
    const pieces = ctx.part.pieces(this.comm.rank);
    const requests = STATE_KINDS.flatMap((kind) =>
      pieces.map((p) => ({ kind, name: p.name, offset: p.paramOffset, length: p.length })),
    );
    const got = await source.read(requests);
    const [param, m, v] = STATE_KINDS.map((_, k) => {
      const shard = new Float32Array(ctx.part.shardLength);
      pieces.forEach((p, i) => shard.set(got[k * pieces.length + i], p.shardOffset));
      return shard;
    });
    opt.loadMoments(m, v);
    await params.load(param);
    this.t = source.t;
  }

  async dispose(): Promise<void> {
    const parts = this.parts;
    if (!parts) return;
    await parts.grads.dispose();
    await parts.params.settle();
    await this.queue.idle();
    parts.params.dispose();
    await parts.opt.dispose();
    this.parts = undefined;
  }

  issued(): Promise<void> {
    return this.queue.idle();
  }

  private require(): Composed {
    if (!this.parts) throw new StrategyError(`${this.name} used before setup(model, params) or after dispose()`);
    return this.parts;
  }
}
