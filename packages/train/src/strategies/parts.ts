// The parts a strategy is composed of (DESIGN.md, "Data flow of one training step"): where
// parameters live, how gradients are reduced, where the optimizer runs. Two runners put them
// together, because the reduced gradient comes in two forms: replicated.ts (full gradient as
// device tensors: LocalStrategy, DDP) and sharded.ts (this rank's shard as a host array: ZeRO).
// The interfaces below are what each runner asks of its parts.
// Details: docs/internals.md#strategy-parts
import type { ReduceOp } from '@zeroring/comm';
import type { Phase } from '../engine.ts';
import type { BlockModel, NamedTensors } from '../model.ts';
import type { AdamWConfig } from '../optim/adamw.ts';
import type { FlatPartition } from '../partition.ts';
import type { MemoryTracker } from '../memory.ts';
import type { MemoryReport } from '../strategy.ts';
import type { DeviceGrads } from './grads-device.ts';
import type { IssueQueue } from './issue-queue.ts';
import type { ShardOptimizer } from './optim-shard.ts';

// ---- replicated strategies (replicated.ts) ----

/**
 * How a replicated strategy's gradients are reduced: whatever the reducer does, every rank ends
 * the step with the complete gradient (averaged over ranks, if any) as device tensors.
 */
export interface FullGradReducer {
  /** The model is known (bucket plans are made here). */
  setup(model: BlockModel): void;
  /** A block's gradients from the engine; the reducer owns them. `grads` is where local sums go. */
  onBlockGrads(block: number, named: NamedTensors, grads: DeviceGrads): void;
  /**
   * Wait until the step's gradients are reduced; throws, naming what never came, when some did
   * not. Returns the milliseconds spent waiting on communication (0 when nothing communicates).
   */
  wait(step: number): Promise<number>;
  /** Hand the reduced gradients to `grads` (uploading what is still on the host). */
  take(grads: DeviceGrads): void;
  /** Resolves once every reduction issued so far has been handed to the process group. */
  issued(): Promise<void>;
  /** The optimizer step is done with what take() handed over. */
  afterStep(): void;
  /** A restored run goes on after `step` optimizer steps (for reducers that count steps). */
  resumeAt?(step: number): void;
  /**
   * Whether this rank's own gradients of the step held NaN or Inf, where the reducer saw them on
   * the host before they were mixed with other ranks' (after wait()); undefined when it did not look.
   */
  localNonFinite(): boolean | undefined;
  /** Adds what the reducer holds apart from the model state (and resets its peaks). */
  report(memory: MemoryReport): void;
  dispose(): Promise<void>;
}

// ---- sharded strategies (sharded.ts) ----

/** The collectives ZeRO needs; a @zeroring/comm ProcessGroup has them. */
export interface ShardComm {
  readonly rank: number;
  readonly worldSize: number;
  allReduce(buf: Float32Array, opts?: { op?: ReduceOp }): Promise<unknown>;
  reduceScatter(input: Float32Array, output: Float32Array, opts?: { op?: ReduceOp }): Promise<unknown>;
  allGather(input: Float32Array, output: Float32Array): Promise<unknown>;
  broadcast(buf: Float32Array, root: number): Promise<unknown>;
}

/** What every part of a sharded strategy shares, made at setup. */
export interface ShardContext {
  readonly comm: ShardComm;
  readonly model: BlockModel;
  /** One flat partition of the parameters: a group per block, rank r owning the r-th 1/N of each. */
  readonly part: FlatPartition;
  /** Every collective goes through it, so all ranks issue them in the same order. */
  readonly queue: IssueQueue;
  readonly mem: MemoryTracker;
}

/** Where a sharded strategy's parameters live, and how the updated shard reaches them. */
export interface ShardedParams {
  acquire(block: number, phase: Phase): NamedTensors | Promise<NamedTensors>;
  release(block: number, phase: Phase): void;
  /** Before the update: nothing may still be in flight. */
  settle(): Promise<void>;
  /** One optimizer step of this rank's parameter shard with its gradient shard; the updated shard. */
  update(opt: ShardOptimizer, grads: Float32Array, lr: number, t: number): Promise<Float32Array>;
  /** After the update: make the parameters the engine reads current (collective). */
  publish(updated: Float32Array): Promise<void>;
  /** Every parameter's full value (collective). */
  fullParams(): Promise<Map<string, Float32Array>>;
  /** A copy of this rank's parameter shard (checkpoints). */
  shardCopy(): Promise<Float32Array>;
  /** Restore this rank's shard (collective). */
  load(shard: Float32Array): Promise<void>;
  /** Gathers issued and acquires served by a prefetch that had landed (zero for resident params). */
  readonly gatherStats: { gathers: number; acquires: number; prefetchHits: number };
  dispose(): void;
}

/** A parameter placement as a composition names it: known before setup, made at setup. */
export interface ShardedParamsPart {
  /**
   * Whether the engine must recompute activations in backward (the tensors a block's forward
   * read are freed after it, as a gathered block is).
   */
  readonly recomputeActivations: boolean;
  /**
   * `flat`: every parameter in the partition's layout (rank 0's values, after the broadcast);
   * `master`: the optimizer's host copy of the parameter shard, when it keeps one.
   */
  new (ctx: ShardContext, flat: Float32Array, master?: Float32Array): ShardedParams;
}

/** How a sharded strategy's gradients become this rank's shard of their average. */
export interface ShardGradReducer {
  onBlockGrads(block: number, grads: NamedTensors): void;
  /**
   * Issue whatever is still to be reduced and check every gradient came; when some did not,
   * drop the step's gradients and throw naming what is missing.
   */
  complete(step: number): Promise<void>;
  /** The reduced, averaged gradient shard once every reduction landed (throws the comm error). */
  wait(): Promise<Float32Array>;
  /** Clear the step's gradients. */
  reset(): void;
  /** Wait for what is in flight and free every tensor. */
  dispose(): Promise<void>;
}

export interface ShardGradReducerPart {
  /** `buffer`: host memory the gradient shard must live in (the offloaded optimizer's), if any. */
  new (ctx: ShardContext, buffer?: Float32Array): ShardGradReducer;
}

/** An optimizer over this rank's shard, placed and accounted. */
export interface PlacedShardOptimizer {
  readonly opt: ShardOptimizer;
  /** The shard's fp32 master parameters, when the optimizer keeps them (host): updated in place. */
  readonly master?: Float32Array;
  /** Where the optimizer wants the reduced gradient shard (host), if it has such memory. */
  readonly gradBuffer?: Float32Array;
}

/** Where the optimizer of the shard runs: `flat` holds every parameter's initial value. */
export type ShardOptimizerPlace = (
  ctx: ShardContext,
  flat: Float32Array,
  cfg: AdamWConfig,
) => Promise<PlacedShardOptimizer>;

/** A ZeRO stage as a composition of the three parts. */
export interface ZeroComposition {
  readonly name: 'zero1' | 'zero2' | 'zero3';
  readonly stage: 1 | 2 | 3;
  readonly params: ShardedParamsPart;
  readonly grads: ShardGradReducerPart;
  /** The optimizer of the shard: on the device, or on the host when offloaded. */
  readonly optimizer: { readonly device: ShardOptimizerPlace; readonly host: ShardOptimizerPlace };
}
