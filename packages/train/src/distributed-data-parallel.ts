// DistributedDataParallel: the user-facing wrapper, torch's `DDP(model)` for a block-list model:
// create(model, pg), forwardBackward (under noSync to accumulate), step, parameters.
// It owns a BlockwiseEngine and a DDPStrategy (strategies/ddp.ts) and nothing else: the trainer
// behind `zeroring train` uses the same strategy directly.
// Details (an example): docs/internals.md#distributeddataparallel
import type * as tf from '@tensorflow/tfjs-core';
import { BlockwiseEngine } from './engine.ts';
import type { BlockModel } from './model.ts';
import type { MemoryReport, StepStats } from './strategy.ts';
import { DDPStrategy, type DDPComm, type DDPStrategyOptions } from './strategies/ddp.ts';

export interface DistributedDataParallelOptions extends DDPStrategyOptions {
  /** Initial parameters (only rank 0's matter: they are broadcast). Default model.initParams(seed). */
  initialParams?: Map<string, Float32Array>;
  /** Seed for model.initParams when initialParams is not given; default 0. */
  seed?: number;
}

export interface StepOptions {
  lr: number;
  /** Clip the averaged gradient to this global L2 norm (0 or undefined: no clipping). */
  maxGradNorm?: number;
  /** Multiply gradients first, e.g. 1/k after k accumulated micro-batches. */
  gradScale?: number;
}

export class DistributedDataParallel {
  readonly engine: BlockwiseEngine;
  private steps = 0;

  private constructor(
    readonly model: BlockModel,
    readonly strategy: DDPStrategy,
  ) {
    this.engine = new BlockwiseEngine(model);
  }

  /** Wraps `model`; collective: every rank calls it (rank 0's parameters are broadcast). */
  static async create(
    model: BlockModel,
    comm: DDPComm,
    opts: DistributedDataParallelOptions = {},
  ): Promise<DistributedDataParallel> {
    const strategy = new DDPStrategy(comm, opts);
    const ddp = new DistributedDataParallel(model, strategy);
    await strategy.setup(model, opts.initialParams ?? model.initParams(opts.seed ?? 0));
    return ddp;
  }

  get rank(): number {
    return this.strategy.comm.rank;
  }

  get worldSize(): number {
    return this.strategy.comm.worldSize;
  }

  /**
   * Forward and backward on this rank's micro-batch; returns its mean loss. Gradients of the
   * last blocks are already being averaged across ranks while the earlier blocks run backward.
   */
  forwardBackward(input: tf.Tensor, targets: tf.Tensor): Promise<number> {
    return this.engine.forwardBackward(input, targets, this.strategy, this.strategy);
  }

  /** torch's `with ddp.no_sync():` — backward passes inside `fn` accumulate without communicating. */
  noSync<T>(fn: () => T | Promise<T>): Promise<T> {
    return this.strategy.noSync(fn);
  }

  /** Wait for the gradient all-reduces, then one AdamW step (the same update on every rank). */
  step(opts: StepOptions): Promise<StepStats> {
    return this.strategy.finishStep({ ...opts, step: this.steps++ });
  }

  /** Forward only: the last block's output (caller disposes it). */
  forward(input: tf.Tensor): Promise<tf.Tensor> {
    return this.engine.forward(input, this.strategy);
  }

  evalLoss(input: tf.Tensor, targets: tf.Tensor): Promise<number> {
    return this.engine.evalLoss(input, targets, this.strategy);
  }

  /** Current parameters by name (host copies). */
  parameters(): Promise<Map<string, Float32Array>> {
    return this.strategy.fullParams();
  }

  memory(): MemoryReport {
    return this.strategy.memory();
  }

  dispose(): Promise<void> {
    return this.strategy.dispose();
  }
}
