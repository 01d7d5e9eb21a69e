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
import { namedSchedule, type PipeScheduleName } from './named.ts';

export type { PipelineStepFigures, StageFigures };
import { inputOf, outputOf, type PipeSchedule } from './schedule.ts';
import { PipelineStage } from './stage.ts';
import { chunkModels, PipelineStageStrategy, type PipelineComm } from './stage-strategy.ts';
import type { GradSink, ParamSource } from '../engine-contract.ts';

export interface PipelineOptions {
  /** This rank's pipeline: its ranks numbered by stage. */
  comm: PipelineComm;
  /** Micro-batches per step. */
  micros: number;
  schedule: PipeScheduleName;
  /** Model chunks per stage (V, virtual stages) for the interleaved schedule; default 1. */
  chunks?: number;
  /** Where the blocks are cut into P·V model stages; default: balanced by parameter count (cutStages). */
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
  /** Model chunks per stage: model stage c·P + s is chunk c of stage s. */
  readonly chunks: number;
  readonly cuts: StageCut[];
  readonly schedule: PipeSchedule;
  /** This stage's chunks, each a PipelineStage over its model stage (made at the first step). */
  private runners?: PipelineStage[];
  private wrapped?: PipelineStageStrategy;
  private evalEngines?: BlockwiseEngine[];

  constructor(
    private readonly model: BlockModel,
    readonly opts: PipelineOptions,
  ) {
    this.stage = opts.comm.rank;
    this.stages = opts.comm.worldSize;
    this.chunks = opts.schedule === 'interleaved' ? (opts.chunks ?? 2) : 1;
    this.cuts = opts.cuts ?? cutStages(model.blocks, this.stages * this.chunks);
    if (this.cuts.length !== this.stages * this.chunks) {
      throw new EngineError(
        `${this.cuts.length} stage cuts for a pipeline of ${this.stages} ranks x ${this.chunks} chunk(s)`,
      );
    }
    this.schedule = namedSchedule(opts.schedule, this.stages, opts.micros, this.chunks);
  }

  /** Whether this stage holds the last model stage, which has the loss. */
  get isLast(): boolean {
    return this.stage === this.stages - 1;
  }

  /** The user's strategy (over this stage's data-parallel group), made this stage's. */
  wrap(inner: Strategy): PipelineStageStrategy {
    const place = { stage: this.stage, stages: this.stages, cuts: this.cuts, micros: this.opts.micros };
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
    const runners = (this.runners ??= this.newStages(strategy));
    for (const r of runners) r.gradScale = gradScale;
    const run = (): Promise<StageStepStats> =>
      runStageStep({
        stage: runners,
        program: this.schedule[this.stage]!,
        comm: this.opts.comm,
        place: { stage: this.stage, stages: this.stages },
        activationShape: this.opts.activationShape(windows),
        micro,
      });
    const stats = strategy.noSync ? await strategy.noSync(run) : await run();
    if (!this.wrapped) throw new EngineError('a pipeline step needs the strategy of PipelineRun.wrap');
    await this.wrapped.sendCopyGradients();
    const { micros } = this.opts;
    const loss =
      stats.losses.length > 0
        ? Promise.all(stats.losses.map(readLoss)).then((ls) => ls.reduce((a, l) => a + l / micros, 0))
        : undefined;
    return {
      ...(loss ? { loss } : {}),
      computeMs: stats.computeMs,
      waitMs: stats.recvWaitMs,
      peakActivationBytes: stats.peakActivationBytes,
      packed: this.pack(stats),
    };
  }

  /**
   * The validation loss of a batch, forward through the stages (round them V times with chunks):
   * on the stage holding the last model stage; undefined elsewhere.
   */
  async evalLoss(strategy: Strategy, input: tf.Tensor, targets: tf.Tensor): Promise<number | undefined> {
    const engines = (this.evalEngines ??= chunkModels(this.model, this.cuts, this.stages, this.stage).map(
      (m) => new BlockwiseEngine(m),
    ));
    const { comm } = this.opts;
    const shape = this.opts.activationShape(input.shape[0]!);
    let loss: number | undefined;
    for (const [c, engine] of engines.entries()) {
      // Chunk c's forward, with its peers as the schedule gives them.
      const forward = { op: 'F' as const, micro: 0, chunk: c };
      const from = inputOf(forward, 0, this.stage, this.stages, this.chunks);
      const to = outputOf(forward, 0, this.stage, this.stages, this.chunks);
      const source = this.chunkView(strategy, c);
      let x = input;
      if (from) {
        const buf = new Float32Array(shape.reduce((a, d) => a * d, 1));
        await comm.recv(buf, from.peer);
        x = tf.tensor(buf, shape);
      }
      try {
        if (!to) loss = await engine.evalLoss(x, targets, source);
        else {
          const y = await engine.forward(x, source);
          const values = (await y.data()) as Float32Array;
          y.dispose();
          await comm.isend(values, to.peer); // resolves once the data has left: y may go
        }
      } finally {
        if (x !== input) x.dispose();
      }
    }
    return loss;
  }

  private newStages(strategy: Strategy): PipelineStage[] {
    return this.cuts.flatMap((cut, g) => {
      if (g % this.stages !== this.stage) return [];
      const view = this.chunkView(strategy, Math.floor(g / this.stages));
      const opts = { recompute: strategy.recomputeActivations };
      return [new PipelineStage(this.model, cut.first, cut.end, view, view, opts)];
    });
  }

  /**
   * Chunk c's blocks as their own source and sink: the stage strategy holds the stage's chunks
   * as one model, their blocks one after another (rankModel), so block b of chunk c is block
   * offset(c) + b there.
   */
  private chunkView(strategy: Strategy, c: number): ParamSource & GradSink {
    const models = chunkModels(this.model, this.cuts, this.stages, this.stage);
    const offset = models.slice(0, c).reduce((a, m) => a + m.blocks.length, 0);
    if (offset === 0) return strategy;
    return {
      recomputeActivations: strategy.recomputeActivations,
      acquire: (b, phase) => strategy.acquire(offset + b, phase),
      release: (b, phase) => strategy.release(offset + b, phase),
      onBlockGrads: (b, grads) => strategy.onBlockGrads(offset + b, grads),
    };
  }

  private get slot(): number {
    return FIXED + 4 * this.opts.micros * this.chunks;
  }

  /** Size of the cross-rank buffer of the stages' figures. */
  get packedLength(): number {
    return this.stages * this.slot;
  }

  /** This stage's figures in its slot; only the first pipeline's ranks report theirs. */
  private pack(stats: StageStepStats): Float32Array {
    const out = new Float32Array(this.packedLength);
    if (this.opts.data.rank !== 0) return out;
    const at = this.stage * this.slot;
    out.set([stats.computeMs, stats.recvWaitMs, stats.peakActivationBytes, stats.peakLive], at);
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
        this.schedule[s]!.map((instr, i) => {
          const box: [string, number, number, number] = [
            instr.op,
            instr.micro,
            round(buf[at + FIXED + 2 * i]!),
            round(buf[at + FIXED + 2 * i + 1]!),
          ];
          return instr.chunk === undefined ? box : [...box, instr.chunk];
        }),
      );
    }
    const bubble = stages.reduce((a, x) => a + x.bubble, 0) / stages.length;
    const chunks = this.chunks > 1 ? { chunks: this.chunks } : {};
    return { schedule: this.opts.schedule, microBatches: this.opts.micros, ...chunks, bubble, stages, timeline };
  }
}

const round = (ms: number): number => Math.round(ms * 100) / 100;
