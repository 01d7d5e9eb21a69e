// `zeroring train --pp P`: the job's ranks laid out as D = N / P pipelines of P stages (gridGroups),
// the GPT's blocks cut into P stages (by parameter count, or by time measured on rank 0 and sent
// to every rank, so all agree), and the user's strategy over each stage's data-parallel group.
import { ConfigError, gridGroups, type ProcessGroup } from '@zeroring/comm';
import type { Logger } from '@zeroring/core';
import type { GPTModel } from '@zeroring/gpt';
import * as tf from '@tensorflow/tfjs-core';
import {
  cutByTime,
  cutStages,
  measureBlockMs,
  PipelineRun,
  type PipeScheduleName,
  type StageCut,
  type StrategyComm,
} from '@zeroring/train';

/** The pipeline's part of a job's options (TrainJobOptions). */
export interface PipelineJobOptions {
  /** Pipeline stages; 1 (the default) is no pipeline. */
  pp?: number;
  /** Micro-batches per step (default 2 × pp). */
  microBatches?: number;
  schedule?: PipeScheduleName;
  /** Model chunks per stage with the interleaved schedule (default 2). */
  virtualStages?: number;
  /** Cut the blocks by parameter count (default) or by measured time. */
  ppBalance?: 'params' | 'time';
}

/** The rest of the job's options that a pipeline looks at. */
interface JobInput extends PipelineJobOptions {
  strategy: string;
  offload: boolean;
  gradAccum?: number;
  batchSplit?: number[];
  balance?: boolean;
  batchSize: number;
  seed: number;
}

/** The strategies that run across pipelines: each stage's replicas hold whole parameters. */
export const PIPELINE_STRATEGIES = ['ddp', 'zero1'] as const;

/** What a pipeline job must not be given, found before any worker starts. */
export function checkPipelineJob(job: JobInput, worldSize: number): void {
  const pp = job.pp ?? 1;
  if (pp === 1) return;
  const why = [
    !(PIPELINE_STRATEGIES as readonly string[]).includes(job.strategy) &&
      `--strategy ${job.strategy} (a pipeline runs ${PIPELINE_STRATEGIES.join(' or ')} across its pipelines)`,
    job.offload && '--offload',
    job.gradAccum !== undefined && '--grad-accum (--micro-batches is the accumulation of a pipeline)',
    job.batchSplit !== undefined && '--batch-split',
    job.balance && '--balance',
  ].filter((w): w is string => typeof w === 'string');
  if (why.length > 0) throw new ConfigError(`--pp ${pp} does not take ${why.join(', ')}`);
  const micros = job.microBatches ?? 2 * pp;
  if (job.schedule === 'interleaved' && micros % pp !== 0) {
    throw new ConfigError(
      `--schedule interleaved needs --micro-batches a multiple of --pp ${pp} (micro-batches go round in groups ` +
        `of P), got ${micros}`,
    );
  }
  if (worldSize % pp !== 0) {
    throw new ConfigError(
      `--pp ${pp} needs a world size divisible by it, got ${worldSize} rank(s): expected --nproc (times --nnodes) ` +
        `a multiple of ${pp}`,
    );
  }
}

export interface PipelineJob {
  run: PipelineRun;
  /** The ranks holding this rank's stage, one per pipeline: the stage strategy's process group. */
  data: StrategyComm;
}

/** The pipeline this rank belongs to, its stage and its data-parallel group (collective over `pg`). */
export async function createPipelineJob(
  job: JobInput,
  model: GPTModel,
  pg: ProcessGroup,
  log: Logger,
): Promise<PipelineJob> {
  checkPipelineJob(job, pg.worldSize);
  const pp = job.pp!;
  const grid = await gridGroups(pg, { pp });
  const chunks = job.schedule === 'interleaved' ? (job.virtualStages ?? 2) : 1;
  const parts = pp * chunks;
  if (parts > model.blocks.length) {
    throw new ConfigError(
      `--pp ${pp}${chunks > 1 ? ` x --virtual-stages ${chunks}` : ''} needs ${parts} model stages, but the GPT ` +
        `has ${model.blocks.length} blocks (embedding, ${model.config.nLayer} layers, head)`,
    );
  }
  const cuts = job.ppBalance === 'time' ? await timedCuts(job, model, pg, parts) : cutStages(model.blocks, parts);
  if (pg.rank === 0) {
    const stages = cuts.map((c) => `blocks ${c.first}..${c.end - 1} (${c.params} params)`).join(', ');
    const of = chunks > 1 ? `${pp} stages x ${chunks} chunks` : `${pp} stages`;
    log.info({ cuts }, `pipeline of ${of} (${job.ppBalance ?? 'params'}): ${stages}`);
  }
  const { blockSize, nEmbd } = model.config;
  const run = new PipelineRun(model, {
    comm: grid.pipeline,
    micros: job.microBatches ?? 2 * pp,
    schedule: job.schedule ?? '1f1b',
    chunks,
    cuts,
    activationShape: (windows) => [windows, blockSize, nEmbd],
    data: { rank: grid.pipelineIndex, worldSize: grid.data.worldSize },
  });
  return { run, data: grid.data };
}

/** Rank 0 times every block on a batch of the job's size and sends the cut into `parts` to all ranks. */
async function timedCuts(job: JobInput, model: GPTModel, pg: ProcessGroup, parts: number): Promise<StageCut[]> {
  const ends = new Float32Array(parts);
  if (pg.rank === 0) {
    const { blockSize, vocabSize } = model.config;
    const ids = (k: number) =>
      tf.tensor(
        Int32Array.from({ length: job.batchSize * blockSize }, (_, i) => (i * 7 + k) % vocabSize),
        [job.batchSize, blockSize],
        'int32',
      );
    const batch = { input: ids(0), targets: ids(1) };
    try {
      const ms = await measureBlockMs(model, model.initParams(job.seed), batch);
      cutByTime(model, ms, parts).forEach((c, i) => (ends[i] = c.end));
    } finally {
      tf.dispose([batch.input, batch.targets]);
    }
  }
  await pg.broadcast(ends, 0);
  const byParams = cutStages(model.blocks, model.blocks.length);
  return [...ends].map((end, stage) => {
    const first = stage === 0 ? 0 : ends[stage - 1]!;
    const params = byParams.slice(first, end).reduce((a, x) => a + x.params, 0);
    return { stage, first, end, params };
  });
}
