// Strategy: where a model's parameters, gradients and optimizer state live, and how one
// optimizer step happens. The blockwise engine only talks to a strategy through ParamSource
// (parameters for a block) and GradSink (gradients as soon as they exist); everything a
// distributed strategy does — DDP bucketed all-reduce, ZeRO reduce-scatter / all-gather, host
// offload — hides behind this one interface, so the trainer runs any of them unchanged.
//
// Life of a step, as the trainer drives it:
//   engine.forwardBackward(x, y, strategy, strategy)   // acquire/release + onBlockGrads
//   [more forwardBackward calls accumulate gradients (summed)]
//   await strategy.finishStep({ lr, step, maxGradNorm })  // wait for comm, clip, optimizer step
import type { BlockModel } from './model.ts';
import type { GradSink, ParamSource } from './engine.ts';
import type { MemoryReport } from './events.ts';
import { MEMORY_CATEGORIES } from './events.ts';
import type { StateSource } from './state-types.ts';
import type { StepReadout } from './step-readout.ts';

export type { MemoryReport };

export interface FinishStepOptions {
  /** Learning rate for this step (the trainer's schedule). */
  lr: number;
  /** 0-based index of the step being finished (informational; the optimizer keeps its own count). */
  step: number;
  /**
   * Clip gradients to this global L2 norm (torch.nn.utils.clip_grad_norm_ semantics: scale by
   * max/(norm+1e-6) when that is below 1). The norm is over the *complete, reduced* gradient, so a
   * sharded strategy must reduce its squared shard norms first. Undefined or 0: no clipping.
   */
  maxGradNorm?: number;
  /**
   * Multiply gradients by this before clipping and the update (e.g. 1/k for k accumulated
   * micro-batches). Default 1.
   */
  gradScale?: number;
  /**
   * Where the step's device figures (gradient norm, non-finite flag) go to be read back with the
   * loss at the end of the step (step-readout.ts). Given, a strategy that has such figures
   * returns them in StepStats.later instead of waiting for them; absent, it reads them itself.
   */
  readout?: StepReadout;
  /**
   * Leave parameters and optimizer state unchanged when the gradient is not finite, decided on
   * the device (only asked of a strategy whose `gatesNonFinite` is true).
   */
  gateNonFinite?: boolean;
  /**
   * A pipeline stage's strategy holds only its stage's parameters, yet clipping is by the norm of
   * the whole model's gradient: when clipping, the strategy passes its own squared norm (of the
   * complete, reduced gradient) through this exactly once and clips by the root of what it returns
   * (the sum over the stages). Absent: the strategy's own norm is the global one.
   */
  squaredNormAcross?: (squared: number) => Promise<number>;
}

/** What a step's device figures tell once the readout is flushed. */
export interface StepLater {
  /** Global gradient norm before clipping (when clipping was requested). */
  gradNorm?: number;
  /** The update was left out on the device because the gradient was not finite (gateNonFinite). */
  skipped: boolean;
  /**
   * Whether this rank's own gradient (before any reduction) held NaN or Inf, when the strategy saw
   * it; with gateNonFinite a strategy says so, or its `skipped` is this rank's own verdict.
   */
  localNonFinite?: boolean;
  /** Communication waited for after the flush (added to StepStats.commMs). */
  commMs?: number;
}

export interface StepStats {
  /** Time finishStep waited on communication that had not finished during backward. */
  commMs: number;
  /** Time of the optimizer update (and any all-gather that follows it, counted in commMs). */
  optimMs: number;
  /** Global gradient norm before clipping (when clipping was requested or cheap to get). */
  gradNorm?: number;
  /**
   * Given when opts.readout held the step's figures: settles after the readout is flushed (the
   * caller flushes it, then awaits this before the next step). May reject, e.g. with the
   * non-finite guard's error.
   */
  later?: Promise<StepLater>;
}

/**
 * One rank's checkpointable state: JSON metadata (strategy, t, params, the pieces it holds) and
 * the arrays over those pieces (state-source.ts).
 */
export interface ShardState {
  meta: Record<string, unknown>;
  arrays: Map<string, Float32Array>;
}

export interface Strategy extends ParamSource, GradSink {
  /** e.g. "local", "ddp", "zero1" (recorded in summary.json and the config event). */
  readonly name: string;
  /**
   * Required here, though optional for a plain ParamSource: every strategy, and every wrapper of
   * one (strategy-wrapper.ts), must say whether the engine recomputes activations in backward.
   */
  readonly recomputeActivations: boolean;
  /**
   * Whether finishStep honours opts.gateNonFinite: it can skip a non-finite update on the device,
   * without reading the gradient back first.
   */
  readonly gatesNonFinite: boolean;
  /**
   * Take ownership of the model and its initial parameters (every name of uniqueParams(model);
   * distributed strategies broadcast rank 0's values so every rank starts identical).
   */
  setup(model: BlockModel, initialParams: Map<string, Float32Array>): Promise<void>;
  /**
   * Resolves once every collective the strategy has queued so far (a gradient reduction waiting
   * for its read-back, say) has been handed to the process group: a wrapper that issues its own
   * collective on the same group waits for this first, so every rank issues them in one order.
   */
  issued(): Promise<void>;
  /** Complete the step: await pending communication, clip, optimizer step, clear gradients. */
  finishStep(opts: FinishStepOptions): Promise<StepStats>;
  /** Every parameter's full current value (ZeRO gathers). Collective: all ranks call it. */
  fullParams(): Promise<Map<string, Float32Array>>;
  /** Bytes held by category and place; gradients and gathered buffers as the peak since the last call. */
  memory(): MemoryReport;
  /** This rank's state for a checkpoint (parameters or shard, optimizer moments, step count). */
  saveState(): Promise<ShardState>;
  /**
   * Restore from state saved by any strategy at any world size (memoryStateSource over saveState's
   * result, or a checkpoint's source); at the same world size and strategy, bit-identical.
   */
  loadState(source: StateSource): Promise<void>;
  /** Free every tensor and stop background work. */
  dispose(): Promise<void>;
  /**
   * Optional, torch's `with ddp.no_sync()`: backward passes run inside only accumulate gradients
   * locally; the next pass outside (or finishStep) communicates everything. The trainer uses it
   * for all but the last micro-batch of a step when accumulating; without it every micro-batch
   * communicates, which is correct but slower.
   */
  noSync?<T>(fn: () => T | Promise<T>): Promise<T>;
}

export class StrategyError extends Error {
  override name = 'StrategyError';
}

/** Model-state bytes of a report: parameters + gradients + optimizer state, device and host. */
export function modelStateBytes(report: MemoryReport): number {
  let sum = 0;
  for (const c of ['params', 'grads', 'optimizer'] as const) {
    const p = report[c];
    if (p) sum += p.device + p.host;
  }
  return sum;
}

/** A report with every category present (zeros where absent), for uniform metrics lines. */
export function fullMemoryReport(report: MemoryReport): Required<MemoryReport> {
  const out = {} as Required<MemoryReport>;
  for (const c of MEMORY_CATEGORIES) out[c] = { device: report[c]?.device ?? 0, host: report[c]?.host ?? 0 };
  return out;
}
