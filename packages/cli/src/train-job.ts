// One training job as `zeroring train` runs it, in this process (--nproc 1) or in each worker the
// launcher starts (--nproc N, see train-worker.ts): backend, corpus, tokenizer, GPT, strategy,
// trainer, progress output and the text sample at the end. Options travel to workers as JSON,
// so everything here is plain data.
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, type BackendKind } from '@zeroring/backend';
import { commHookByName, type CommHookName, type PowerSGDOptions, type ProcessGroup } from '@zeroring/comm';
import { getLogger, type Logger } from '@zeroring/core';
import {
  CharTokenizer,
  TextDataset,
  createGPT,
  generate,
  gptConfig,
  loadCorpus,
  paramsToTensors,
  type GPTModel,
  type PresetName,
} from '@zeroring/gpt';
import {
  NonFiniteGuard,
  createStrategy,
  eventsFileWriter,
  faultPlanFromEnv,
  train,
  withKillHook,
  type OnTrainEvent,
  type Progress,
  type Strategy,
  type StrategyComm,
  type StrategyName,
  type TrainEvent,
  type TrainSummary,
} from '@zeroring/train';
import { createPipelineJob, type PipelineJob, type PipelineJobOptions } from './pipeline-job.ts';
import { createProgress } from './progress.ts';

export interface TrainJobOptions extends PipelineJobOptions {
  nproc: number;
  strategy: StrategyName;
  offload: boolean;
  /** DDP's comm hook (--comm-hook); absent: the plain float32 all-reduce. */
  commHook?: CommHookName;
  /** PowerSGD's settings, with commHook 'powersgd'. */
  powerSGD?: Pick<PowerSGDOptions, 'rank' | 'startStep'>;
  backend: BackendKind;
  model: PresetName;
  data?: string;
  steps: number;
  batchSize: number;
  /** Micro-batches per optimizer step (default 1). */
  gradAccum?: number;
  /** Windows per rank per micro-batch, summing to world size × batchSize (ranks of unequal speed). */
  batchSplit?: number[];
  /** Re-split each step's windows toward the ranks measured faster. */
  balance?: boolean;
  /** Record each step's WebGPU work in metrics.jsonl. */
  countGpuWork?: boolean;
  lr: number;
  seed: number;
  out?: string;
  resume: boolean;
  /** A file of `zeroring consolidate` to continue from. */
  resumeFrom?: string;
  evalInterval: number;
  evalBatches: number;
  warmupSteps?: number;
  checkpointInterval: number;
  /** Characters generated at the end (0: no sample). */
  sampleTokens: number;
  /** Skip a step whose gradients hold NaN or Inf on any rank, on all ranks alike (default: fail naming the step). */
  skipNonFinite?: boolean;
  /** Stop after this many steps of the schedule (an interrupted run; for tests and --resume demos). */
  stopAfter?: number;
  /**
   * Rank 0 also appends its events to DIR/events.jsonl here: the feed of the dashboard that the
   * launching command serves (train.ts), whether or not the run has an --out DIR.
   */
  dashboardFeed?: string;
}

/**
 * Defaults per preset, chosen so the default tiny run learns visibly in a few minutes on 2 cores.
 * gpt2 follows nanoGPT's GPT-2-sized runs (peak lr 6e-4, 100 warmup steps); its batch of 16
 * windows of 256 characters per rank keeps about 2.8 GB of activations on WebGPU besides 1.4 GB of
 * model state (`zeroring estimate-memory --model gpt2 --nproc 1 --batch-size 16` prints both).
 */
export const PRESET_DEFAULTS: Record<
  PresetName,
  { steps: number; batchSize: number; lr: number; evalInterval: number; warmupSteps: number }
> = {
  tiny: { steps: 300, batchSize: 16, lr: 3e-3, evalInterval: 50, warmupSteps: 20 },
  small: { steps: 2000, batchSize: 8, lr: 1e-3, evalInterval: 200, warmupSteps: 100 },
  gpt2: { steps: 5000, batchSize: 16, lr: 6e-4, evalInterval: 250, warmupSteps: 100 },
};

export class TrainJobError extends Error {
  override name = 'TrainJobError';
}

export interface JobContext {
  /** The process group of a worker (train-worker.ts); none when the job runs in this process. */
  comm?: ProcessGroup;
  /** Also receives rank 0's events in this process (the in-process run's dashboard). */
  onEvent?: OnTrainEvent;
}

export interface PreparedData {
  tokenizer: CharTokenizer;
  dataset: TextDataset;
  model: GPTModel;
}

export function prepareData(opts: { data?: string; model: PresetName; seed: number }): PreparedData {
  const text = loadCorpus(opts.data);
  const tokenizer = CharTokenizer.fromText(text);
  const dataset = new TextDataset(tokenizer.encode(text), { seed: opts.seed });
  const model = createGPT(gptConfig(opts.model, tokenizer.vocabSize));
  return { tokenizer, dataset, model };
}

export async function sampleText(
  model: GPTModel,
  tokenizer: CharTokenizer,
  params: Map<string, Float32Array>,
  o: { prompt: string; maxNewTokens: number; temperature: number; topK?: number; seed: number },
): Promise<string> {
  const tensors = paramsToTensors(params, model);
  try {
    const ids = await generate(model, tensors, tokenizer.encode(o.prompt), {
      maxNewTokens: o.maxNewTokens,
      temperature: o.temperature,
      topK: o.topK,
      seed: o.seed,
    });
    return tokenizer.decode(ids);
  } finally {
    tf.dispose(Object.values(tensors));
  }
}

export async function runTrainJob(opts: TrainJobOptions, ctx: JobContext = {}): Promise<TrainSummary> {
  const log = getLogger({ cmd: 'train' });
  const rank = ctx.comm?.rank ?? 0;
  const worldSize = ctx.comm?.worldSize ?? 1;
  const lead = rank === 0;
  // The data first: a bad --data file is reported before the backend takes seconds to start.
  const data = prepareData(opts);
  const backend = await initBackend(opts.backend, { logger: log });
  const pipeline = (opts.pp ?? 1) > 1 ? await createPipelineJob(opts, data.model, requireGroup(ctx), log) : undefined;
  const strategy = guardedStrategy(opts, ctx.comm, rank, log, pipeline);
  const progress = lead ? createProgress({ label: 'train' }) : undefined;
  if (lead) {
    const { tokenizer, model } = data;
    log.info(
      { vocab: tokenizer.vocabSize, worldSize, strategy: strategy.name },
      `training GPT ${opts.model} (${tokenizer.vocabSize} chars) for ${opts.steps} steps, ` +
        `batch ${opts.batchSize}×${model.config.blockSize} per rank × ${worldSize} rank(s)`,
    );
  }
  progress?.start(opts.steps, { loss: '-', 'tok/s': '-' });
  let summary: TrainSummary;
  try {
    summary = await train({
      ...trainerInputs(opts, data, strategy, ctx.comm, pipeline),
      backendName: backend.name,
      runConfig: runConfigOf(opts, data, backend.name),
      onEvent: eventSink(opts, ctx, lead, log),
      warn: (msg) => log.warn(msg),
      info: (msg) => log.info(msg),
      onProgress: (p) => progress?.update(p.step, progressFields(p, worldSize)),
    });
  } finally {
    progress?.stop();
    await strategy.dispose();
  }
  if (lead) reportSummary(summary, opts, log);
  return summary;
}

/**
 * The strategy for the job, wrapped so that every rank agrees on non-finite gradients before a
 * parameter moves (nonfinite.ts); the fault hooks (faults.ts, test-only environment variables)
 * are inert unless set.
 */
function guardedStrategy(
  opts: TrainJobOptions,
  comm: StrategyComm | undefined,
  rank: number,
  log: Logger,
  pipeline?: PipelineJob,
): Strategy {
  const faults = faultPlanFromEnv(rank);
  // With a pipeline, the user's strategy runs over the stage's data-parallel group, wrapped as the stage's.
  // A fresh hook per process: PowerSGD keeps its state (error feedback, warm Q) per rank.
  const commHook = opts.commHook ? commHookByName(opts.commHook, opts.powerSGD) : undefined;
  const chosen = createStrategy(opts.strategy, pipeline ? pipeline.data : comm, { offload: opts.offload, commHook });
  const guard = new NonFiniteGuard(pipeline ? pipeline.run.wrap(chosen) : chosen, {
    comm,
    skip: opts.skipNonFinite ?? false,
    warn: (m) => log.warn(m),
    poisonAtLocalStep: faults.nanAtLocalStep,
  });
  return withKillHook(guard, faults);
}

function requireGroup(ctx: JobContext): ProcessGroup {
  if (!ctx.comm)
    throw new TrainJobError('--pp needs worker processes (zeroring train --nproc N with N a multiple of --pp)');
  return ctx.comm;
}

/** What the run records as its configuration (summary.json, the checkpoint's config.json). */
function runConfigOf(opts: TrainJobOptions, data: PreparedData, backend: string): Record<string, unknown> {
  return {
    model: opts.model,
    modelConfig: data.model.config,
    data: opts.data ?? 'moby-dick',
    backend,
    strategyRequested: opts.strategy,
    offload: opts.offload,
    commHook: opts.commHook ?? 'none',
    ...(opts.powerSGD ? { powerSGD: opts.powerSGD } : {}),
    nproc: opts.nproc,
  };
}

/** The trainer's model, data, schedule and outputs for these options. */
function trainerInputs(
  opts: TrainJobOptions,
  data: PreparedData,
  strategy: Strategy,
  comm?: StrategyComm,
  pipeline?: PipelineJob,
) {
  const { model, tokenizer, dataset } = data;
  const prompt = tokenizer.chars.includes('\n') ? '\n' : tokenizer.chars[0]!;
  const sampleOptions = { prompt, maxNewTokens: opts.sampleTokens, temperature: 0.8, topK: 40, seed: opts.seed };
  return {
    model,
    strategy,
    data: dataset,
    comm,
    pipeline: pipeline?.run,
    outDir: opts.out,
    resume: opts.resume,
    resumeFrom: opts.resumeFrom,
    stopAfterSteps: opts.stopAfter,
    checkpointFiles: { 'tokenizer.json': tokenizer.toJSON() },
    config: {
      steps: opts.steps,
      batchSize: opts.batchSize,
      gradAccumSteps: pipeline ? pipeline.run.opts.micros : opts.gradAccum,
      batchSplit: opts.batchSplit,
      balanceBatch: opts.balance,
      blockSize: model.config.blockSize,
      lr: opts.lr,
      warmupSteps: opts.warmupSteps,
      seed: opts.seed,
      evalInterval: opts.evalInterval,
      evalBatches: opts.evalBatches,
      checkpointInterval: opts.checkpointInterval,
      countGpuWork: opts.countGpuWork,
    },
    sample:
      opts.sampleTokens > 0
        ? (params: Map<string, Float32Array>) => sampleText(model, tokenizer, params, sampleOptions)
        : undefined,
  };
}

/** Where rank 0's events go: --out's events.jsonl, the dashboard's feed or hook, and the log. */
function eventSink(opts: TrainJobOptions, ctx: JobContext, lead: boolean, log: Logger): OnTrainEvent {
  const events = lead && opts.out ? eventsFileWriter(opts.out, { truncate: !opts.resume }) : undefined;
  // Truncated alike: a restart that starts over makes the dashboard start over too.
  const feed =
    lead && opts.dashboardFeed ? eventsFileWriter(opts.dashboardFeed, { truncate: !opts.resume }) : undefined;
  return (e: TrainEvent) => {
    events?.(e);
    feed?.(e);
    ctx.onEvent?.(e);
    if (e.type === 'val') {
      log.info({ step: e.step, valLoss: e.valLoss }, `step ${e.step}/${opts.steps} val loss ${e.valLoss.toFixed(4)}`);
    }
  };
}

/** The progress line's fields for a step. */
function progressFields(p: Progress, worldSize: number): Record<string, string | number> {
  return {
    loss: p.loss.toFixed(4),
    'tok/s': Math.round(p.tokensPerSec),
    ...(worldSize > 1 ? { comm: `${(100 * p.commFraction).toFixed(1)}%` } : {}),
    // Of comm, the wait for slower ranks: --balance's business, not the network's.
    ...(p.stragglerFraction !== undefined ? { straggler: `${(100 * p.stragglerFraction).toFixed(1)}%` } : {}),
    eta: `${Math.round(p.etaSec)}s`,
  };
}

/** Rank 0's closing lines: the figures and the sample, or why nothing was trained. */
function reportSummary(summary: TrainSummary, opts: TrainJobOptions, log: Logger): void {
  if (summary.alreadyFinished) {
    log.info(
      { steps: summary.steps, out: opts.out },
      `the run in ${opts.out} already finished its ${summary.steps} steps; nothing to do (its summary.json is kept; ` +
        `pass a larger --steps to train on)`,
    );
    return;
  }
  const v0 = summary.initialValLoss;
  const tokensPerSec = Math.round(summary.tokensPerSec);
  const valLoss = `${v0 === null ? '' : v0.toFixed(3) + ' -> '}${summary.finalValLoss?.toFixed(3) ?? 'n/a'}`;
  log.info(
    {
      finalLoss: summary.finalLoss,
      finalValLoss: summary.finalValLoss,
      tokensPerSec,
      wallSeconds: summary.wallSeconds,
    },
    `done: ${summary.steps} steps in ${summary.wallSeconds.toFixed(1)} ` +
      `s, ${tokensPerSec} tokens/s, val loss ${valLoss}`,
  );
  if (summary.sample !== undefined) process.stdout.write(`--- sample ---\n${summary.sample}\n--------------\n`);
}
