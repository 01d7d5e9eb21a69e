// What a training run is, worked out once from the trainer's options before anything runs: the
// validated configuration, this rank's place, the learning-rate schedule, the configuration
// recorded in summary.json and checkpoints, where files go, and how events are emitted (rank 0
// only; a failing event hook never stops training, events.ts).
import * as tf from '@tensorflow/tfjs-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { TrainEvent } from '../events.ts';
import { paramCount, uniqueParams } from '../model.ts';
import type { LrSchedule } from '../schedule.ts';
import { freshPlan, type BatchPlan } from './batch-plan.ts';
import { TrainerError, type TrainConfig, type TrainerOptions } from './types.ts';

export interface TrainRun {
  readonly opts: TrainerOptions;
  readonly cfg: TrainConfig;
  readonly rank: number;
  readonly worldSize: number;
  /**
   * This rank's place among the ranks that read different windows: the rank and world size, or
   * with a pipeline, which pipeline and how many (every stage of a pipeline reads its windows).
   */
  readonly dataRank: number;
  readonly dataWorld: number;
  /** Rank 0: writes the files and emits the events. */
  readonly lead: boolean;
  /** Window length, and the configured windows per rank per micro-batch (validation batches too). */
  readonly T: number;
  readonly B: number;
  /** How each step's windows are cut into micro-batches and ranks; a resume may re-split it. */
  batch: BatchPlan;
  readonly schedule: LrSchedule;
  readonly maxGradNorm: number;
  /** summary.config and the checkpoints' config.json. */
  readonly runConfig: Record<string, unknown>;
  readonly paramCount: number;
  /** The step this process stops after (config.steps, or earlier when told to stop). */
  readonly endStep: number;
  readonly doEval: boolean;
  readonly metricsPath?: string;
  readonly checkpointRoot?: string;
  /** performance.now() at the start (summary.wallSeconds). */
  readonly started: number;
  emit(e: TrainEvent): void;
}

function validate(cfg: TrainConfig, accum: number): void {
  const ints = [
    ['steps', cfg.steps],
    ['batchSize', cfg.batchSize],
    ['blockSize', cfg.blockSize],
    ['gradAccumSteps', accum],
  ] as const;
  for (const [k, v] of ints) {
    if (!Number.isInteger(v) || v < 1) throw new TrainerError(`config.${k} = ${v}, expected a positive integer`);
  }
  if (!(cfg.lr > 0)) throw new TrainerError(`config.lr = ${cfg.lr}, expected a positive number`);
}

export function prepareRun(opts: TrainerOptions): TrainRun {
  const { config: cfg, outDir, comm, strategy } = opts;
  const rank = comm?.rank ?? 0;
  const worldSize = comm?.worldSize ?? 1;
  const lead = rank === 0;
  const accum = cfg.gradAccumSteps ?? 1;
  validate(cfg, accum);
  const data = opts.pipeline?.opts.data ?? { rank, worldSize };
  if (opts.pipeline && (cfg.balanceBatch || cfg.batchSplit)) {
    throw new TrainerError('a pipeline reads even shares of each step: --balance and --batch-split do not apply');
  }
  const schedule: LrSchedule = {
    lr: cfg.lr,
    minLr: cfg.minLr ?? cfg.lr / 10,
    warmupSteps: cfg.warmupSteps ?? Math.min(100, Math.floor(cfg.steps / 10)),
    decaySteps: cfg.decaySteps ?? cfg.steps,
  };
  const maxGradNorm = cfg.maxGradNorm ?? 1.0;
  const emit = (e: TrainEvent): void => {
    if (!lead || !opts.onEvent) return;
    try {
      opts.onEvent(e);
    } catch {
      // The hook's failures are its own (events.ts); training goes on.
    }
  };
  const pipeline = opts.pipeline && {
    stages: opts.pipeline.stages,
    microBatches: accum,
    schedule: opts.pipeline.opts.schedule,
    cuts: opts.pipeline.cuts.map((c) => [c.first, c.end]),
  };
  const runConfig = {
    ...opts.runConfig,
    ...cfg,
    schedule,
    maxGradNorm,
    strategy: strategy.name,
    worldSize,
    ...(pipeline ? { pipeline } : {}),
  };
  const run: TrainRun = {
    opts,
    cfg,
    rank,
    worldSize,
    dataRank: data.rank,
    dataWorld: data.worldSize,
    lead,
    T: cfg.blockSize,
    B: cfg.batchSize,
    batch: freshPlan(data.worldSize, cfg.batchSize, accum),
    schedule,
    maxGradNorm,
    runConfig,
    paramCount: uniqueParams(opts.model).reduce((n, s) => n + paramCount(s), 0),
    endStep: Math.min(cfg.steps, opts.stopAfterSteps ?? cfg.steps),
    doEval: cfg.evalInterval > 0 && cfg.evalBatches > 0,
    metricsPath: outDir ? join(outDir, 'metrics.jsonl') : undefined,
    checkpointRoot: outDir ? join(outDir, 'checkpoints') : undefined,
    started: performance.now(),
    emit,
  };
  if (outDir && lead) mkdirSync(outDir, { recursive: true });
  return run;
}

/** Tokens of one optimizer step over all ranks. */
export function tokensPerStep(run: TrainRun): number {
  return run.batch.global * run.T;
}

/** The config event that opens events.jsonl and the dashboard. */
export function emitConfig(run: TrainRun): void {
  const { opts, runConfig, paramCount, worldSize } = run;
  const backend = opts.backendName ?? tf.getBackend();
  run.emit({ type: 'config', config: runConfig, paramCount, strategy: opts.strategy.name, backend, worldSize });
}
