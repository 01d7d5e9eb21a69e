// The trainer's public types: its configuration, options, progress line and summary (the
// summary is what summary.json holds, DESIGN.md "Contracts").
import type { ReduceOp } from '@zeroring/comm';
import type { OnTrainEvent } from '../events.ts';
import type { BlockModel } from '../model.ts';
import type { PipelineRun } from '../pipeline/runtime.ts';
import type { MemoryReport, Strategy } from '../strategy.ts';

export class TrainerError extends Error {
  override name = 'TrainerError';
}

/** Token windows: what @zeroring/gpt's TextDataset provides. */
export interface WindowData {
  windowStarts(split: 'train' | 'val', blockSize: number, stride?: number): Int32Array;
  batchAt(starts: ArrayLike<number>, blockSize: number): { input: Int32Array; targets: Int32Array };
}

/** The collectives the trainer itself needs (a ProcessGroup has them). */
export interface TrainerComm {
  rank: number;
  worldSize: number;
  allReduce(buf: Float32Array, opts?: { op?: ReduceOp }): Promise<unknown>;
  barrier(): Promise<unknown>;
}

export interface TrainConfig {
  /** Total optimizer steps of the run (also the end of the cosine decay unless decaySteps is set). */
  steps: number;
  /** Windows per rank per micro-batch. */
  batchSize: number;
  /** Micro-batches accumulated into each optimizer step (gradients averaged); default 1. */
  gradAccumSteps?: number;
  /** Window length T (the model's context). */
  blockSize: number;
  lr: number;
  /** Floor of the cosine schedule; default lr / 10 (nanoGPT). */
  minLr?: number;
  /** Linear warmup steps; default min(100, steps / 10). */
  warmupSteps?: number;
  decaySteps?: number;
  /** Global gradient-norm clip; default 1.0 as nanoGPT, 0 disables. */
  maxGradNorm?: number;
  seed: number;
  /** Validate every K steps (and before the first and after the last step). 0 disables. */
  evalInterval: number;
  /** Validation batches (of batchSize windows) in the fixed validation set. */
  evalBatches: number;
  /**
   * Windows each rank reads per micro-batch, in rank order, summing to world size × batchSize
   * (default batchSize each): for ranks of known unequal speed. The step reads the same windows
   * and its gradient is the same mean however they are split (batch-balance.ts).
   */
  batchSplit?: number[];
  /**
   * Re-split every step's windows toward the ranks measured faster (batch-balance.ts), starting
   * from batchSplit, or on resume from the split the checkpoint recorded (same world size). The
   * parameters stay those of the even split up to float rounding, so a resumed run matches an
   * uninterrupted one only to rounding. Default false.
   */
  balanceBatch?: boolean;
  /** Save a checkpoint every K steps (and at the end when outDir is set). 0: only at the end. */
  checkpointInterval?: number;
  keepCheckpoints?: number;
  /**
   * Add each step's WebGPU work to metrics.jsonl (`gpu`: dispatches, submissions, read-backs
   * and their bytes, CPU time enqueueing vs waiting on the GPU). Default false.
   */
  countGpuWork?: boolean;
}

export interface Progress {
  step: number;
  steps: number;
  loss: number;
  lr: number;
  tokensPerSec: number;
  /** Share of the step spent waiting on communication (mean over ranks). */
  commFraction: number;
  /** The part of commFraction spent waiting for slower ranks rather than for the wire (multi-process runs). */
  stragglerFraction?: number;
  etaSec: number;
  valLoss?: number;
}

export interface TrainerOptions {
  model: BlockModel;
  strategy: Strategy;
  data: WindowData;
  config: TrainConfig;
  /** Where metrics.jsonl, summary.json and checkpoints/ go; nothing is written without it. */
  outDir?: string;
  /** Continue from the newest complete checkpoint in outDir/checkpoints. */
  resume?: boolean;
  /** Continue from a file of `zeroring consolidate` instead (outDir starts fresh). */
  resumeFrom?: string;
  /** Stop after this step count even though the schedule is for config.steps (an interrupted run). */
  stopAfterSteps?: number;
  comm?: TrainerComm;
  /**
   * Pipeline parallelism: this rank runs one stage of a pipeline (its strategy is the run's
   * wrap() of the user's), and data parallelism is across pipelines. config.gradAccumSteps is the
   * pipeline's micro-batch count.
   */
  pipeline?: PipelineRun;
  onEvent?: OnTrainEvent;
  onProgress?: (p: Progress) => void;
  /** Warnings (e.g. a corrupt checkpoint skipped). */
  warn?: (msg: string) => void;
  /** What the run did that a user should know (e.g. where it resumed from, and at what world size). */
  info?: (msg: string) => void;
  /** Recorded as summary.config and the checkpoint's config.json (model preset, backend, CLI flags...). */
  runConfig?: Record<string, unknown>;
  /** Extra JSON files for every checkpoint, e.g. { 'tokenizer.json': tokenizer.toJSON() }. */
  checkpointFiles?: Record<string, unknown>;
  /** Produce a text sample from the final parameters (rank 0, at the end). */
  sample?: (params: Map<string, Float32Array>) => Promise<string> | string;
  backendName?: string;
}

export interface TrainSummary {
  config: Record<string, unknown>;
  steps: number;
  paramCount: number;
  finalLoss: number;
  finalValLoss: number | null;
  initialValLoss: number | null;
  paramChecksum: number;
  memory: { modelStateBytes: number; peak: Required<MemoryReport> };
  strategy: string;
  worldSize: number;
  tokensPerSec: number;
  wallSeconds: number;
  sample?: string;
  resumedFrom?: number;
  /**
   * Resumed runs: the most model-state bytes any rank read to resume (blocks of the checkpoint's
   * shards), against the whole state (parameters and both moments, 12 bytes a parameter).
   */
  resumeRead?: { maxRankBytes: number; stateBytes: number };
  /** Set (and nothing written) when a resume found the run already at its last step. */
  alreadyFinished?: boolean;
}
