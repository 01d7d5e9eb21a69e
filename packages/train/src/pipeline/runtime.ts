// Pipeline training as the trainer drives it: this rank's stage of one pipeline, run one step at
// a time in the order of a schedule (GPipe or 1F1B), evaluated by forwards through the stages,
// and the step's figures per stage (compute, receive wait, bubble, activation peak, timeline)
// packed for the trainer's one cross-rank all-reduce of metrics.
//
// The step's gradients accumulate over its micro-batches inside the stage's strategy (under
// noSync where it has one) and are reduced across pipelines once, when the step finishes, as
// Megatron's non-overlapped data-parallel reduction after the pipeline flush.
// Details: docs/internals.md#pipeline-training
import * as tf from '@tensorflow/tfjs-core';
import { BlockwiseEngine } from '../engine.ts';
import { EngineError, type DeviceLoss } from '../engine-pass.ts';
import type { PipelineStepFigures, StageFigures } from '../events.ts';
import type { BlockModel } from '../model.ts';
import type { Strategy } from '../strategy.ts';
import { cutStages, type StageCut } from './cut.ts';
import { runStageStep, type StageStepStats } from './executor.ts';
import { gpipeSchedule } from './gpipe.ts';
import { oneFOneBSchedule, type PipeScheduleName } from './one-f-one-b.ts';

export type { PipelineStepFigures, StageFigures };
import type { PipeSchedule } from './schedule.ts';
import { PipelineStage, stageModel } from './stage.ts';
import { PipelineStageStrategy, type PipelineComm } from './stage-strategy.ts';

export interface PipelineOptions {
  /** This rank's pipeline: its ranks numbered by stage. */
  comm: PipelineComm;
  /** Micro-batches per step. */
  micros: number;
  schedule: PipeScheduleName;
  /** Where the blocks are cut; default: balanced by parameter count (cutStages). */
  cuts?: StageCut[];
  /** The shape of the activation between two stages for a micro-batch of `windows` windows. */
  activationShape(windows: number): number[];
  /** Which pipeline this rank's is, and how many run side by side (data parallelism across them). */
  data: { rank: number; worldSize: number };
}

export interface PipelineStepResult {
  /** This pipeline's mean loss over the step's micro-batches (last stage only). */
  loss?: Promise<number>;
  computeMs: number;
  waitMs: number;
  peakActivationBytes: number;
  /** This stage's figures in the slot of the cross-rank buffer (zeros elsewhere and on other pipelines). */
  packed: Float32Array;
}

/** A stage's slot: compute, wait, peak activation bytes, peak live micro-batches, then its timeline. */
const FIXED = 4;

export class PipelineRun {
  readonly stage: number;
  readonly stages: number;
  readonly cuts: StageCut[];
  readonly schedule: PipeSchedule;
  private runner?: PipelineStage;
  private wrapped?: PipelineStageStrategy;
  private evalEngine?: BlockwiseEngine;

  constructor(
    private readonly model: BlockModel,
    readonly opts: PipelineOptions,
  ) {
    this.stage = opts.comm.rank;
    this.stages = opts.comm.worldSize;
    this.cuts = opts.cuts ?? cutStages(model.blocks, this.stages);
    if (this.cuts.length !== this.stages) {
      throw new EngineError(`${this.cuts.length} stage cuts for a pipeline of ${this.stages} ranks`);
    }
    this.schedule = (opts.schedule === 'gpipe' ? gpipeSchedule : oneFOneBSchedule)(this.stages, opts.micros);
  }

  get isFirst(): boolean {
    return this.stage === 0;
  }

  get isLast(): boolean {
    return this.stage === this.stages - 1;
  }

  /** The user's strategy (over this stage's data-parallel group), made this stage's. */
  wrap(inner: Strategy): PipelineStageStrategy {
    const place = { stage: this.stage, cuts: this.cuts, micros: this.opts.micros };
    this.wrapped = new PipelineStageStrategy(inner, place, this.opts.comm);
    return this.wrapped;
  }

  /**
   * One step's forwards and backwards on this stage; gradients go into `strategy` (the wrapped
   * stage strategy, or a wrapper of it). `gradScale`: the last stage's loss scale per micro-batch.
   */
  async step(
    strategy: Strategy,
    micro: (m: number) => { input: tf.Tensor; targets: tf.Tensor },
    windows: number,
    gradScale: number,
    readLoss: (loss: DeviceLoss) => Promise<number>,
  ): Promise<PipelineStepResult> {
    const stage = (this.runner ??= this.newStage(strategy));
    stage.gradScale = gradScale;
    stage.peakActivationBytes = 0;
    const run = (): Promise<StageStepStats> =>
      runStageStep({
        stage,
        program: this.schedule[this.stage]!,
        comm: this.opts.comm,
        prev: this.isFirst ? undefined : this.stage - 1,
        next: this.isLast ? undefined : this.stage + 1,
        activationShape: this.opts.activationShape(windows),
        micro,
      });
    const stats = strategy.noSync ? await strategy.noSync(run) : await run();
    if (!this.wrapped) throw new EngineError('a pipeline step needs the strategy of PipelineRun.wrap');
    await this.wrapped.sendCopyGradients();
    const { micros } = this.opts;
    const loss = this.isLast
      ? Promise.all(stats.losses.map(readLoss)).then((ls) => ls.reduce((a, l) => a + l / micros, 0))
      : undefined;
    return {
      ...(loss ? { loss } : {}),
      computeMs: stats.computeMs,
      waitMs: stats.recvWaitMs,
      peakActivationBytes: stage.peakActivationBytes,
      packed: this.pack(stats, stage.peakActivationBytes),
    };
  }

  /** The validation loss of a batch, forward through the stages: on the last stage; undefined elsewhere. */
  async evalLoss(strategy: Strategy, input: tf.Tensor, targets: tf.Tensor): Promise<number | undefined> {
    const { first, end } = this.cuts[this.stage]!;
    const part = stageModel(this.model, first, end);
    const engine = (this.evalEngine ??= new BlockwiseEngine(part));
    const { comm } = this.opts;
    let x = input;
    if (!this.isFirst) {
      const buf = new Float32Array(this.opts.activationShape(input.shape[0]!).reduce((a, d) => a * d, 1));
      await comm.recv(buf, this.stage - 1);
      x = tf.tensor(buf, this.opts.activationShape(input.shape[0]!));
    }
    try {
      if (this.isLast) return await engine.evalLoss(x, targets, strategy);
      const y = await engine.forward(x, strategy);
      const values = (await y.data()) as Float32Array;
      y.dispose();
      await comm.isend(values, this.stage + 1); // resolves once the data has left: y may go
      return undefined;
    } finally {
      if (x !== input) x.dispose();
    }
  }

  private newStage(strategy: Strategy): PipelineStage {
    const { first, end } = this.cuts[this.stage]!;
    return new PipelineStage(this.model, first, end, strategy, strategy, {
      recompute: strategy.recomputeActivations,
    });
  }

  private get slot(): number {
    return FIXED + 4 * this.opts.micros;
  }

  /** Size of the cross-rank buffer of the stages' figures. */
  get packedLength(): number {
    return this.stages * this.slot;
  }

  /** This stage's figures in its slot; only the first pipeline's ranks report theirs. */
  private pack(stats: StageStepStats, peakBytes: number): Float32Array {
    const out = new Float32Array(this.packedLength);
    if (this.opts.data.rank !== 0) return out;
    const at = this.stage * this.slot;
    out.set([stats.computeMs, stats.recvWaitMs, peakBytes, stats.peakLive], at);
    stats.timeline.forEach((t, i) => out.set([t.start, t.end], at + FIXED + 2 * i));
    return out;
  }

  /** The figures of every stage of the first pipeline, from the summed buffer. */
  unpack(buf: Float32Array): PipelineStepFigures {
    const stages: StageFigures[] = [];
    const timeline: PipelineStepFigures['timeline'] = [];
    for (let s = 0; s < this.stages; s++) {
      const at = s * this.slot;
      const [computeMs, waitMs, peakActivationBytes, peakLive] = buf.subarray(at, at + 4);
      const total = computeMs! + waitMs!;
      stages.push({
        computeMs: computeMs!,
        waitMs: waitMs!,
        bubble: total > 0 ? waitMs! / total : 0,
        peakActivationBytes: peakActivationBytes!,
        peakLive: peakLive!,
      });
      timeline.push(
        this.schedule[s]!.map((instr, i) => [
          instr.op,
          instr.micro,
          round(buf[at + FIXED + 2 * i]!),
          round(buf[at + FIXED + 2 * i + 1]!),
        ]),
      );
    }
    const bubble = stages.reduce((a, x) => a + x.bubble, 0) / stages.length;
    return { schedule: this.opts.schedule, microBatches: this.opts.micros, bubble, stages, timeline };
  }
}

const round = (ms: number): number => Math.round(ms * 100) / 100;
