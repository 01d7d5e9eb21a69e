// The record of each step: rank 0's metrics line (metrics.jsonl), its step and val events, and
// the progress line, from figures taken over all ranks.
//
// Those cross-rank figures come from one sum all-reduce per step that carries every rank's
// split (compute, comm, optimizer time, memory) and loss. It is issued and not awaited: a step's
// record is completed during the next step, while that step's gradients are on the wire (its
// all-reduce went out before them, so it is done by then), so neither the collective nor rank
// 0's file writes, events and progress line are a per-step sync point that holds the other
// ranks back. With one process a record is completed at once.
import { appendFileSync } from 'node:fs';
import type { GpuWorkCounts } from '@zeroring/backend';
import type { BatchBalancer } from '../batch-balance.ts';
import { packRankStep, unpackRankSteps, type PipelineStepFigures, type RankStep } from '../events.ts';
import { fullMemoryReport, modelStateBytes, type MemoryReport } from '../strategy.ts';
import { tokensPerStep, type TrainRun } from './run.ts';

/** A step whose cross-rank metrics all-reduce may still be in flight. */
export interface StepRecord {
  step: number;
  lr: number;
  lossLocal: number;
  computeMs: number;
  commMs: number;
  optimMs: number;
  gradNorm?: number;
  mem: Required<MemoryReport>;
  /** This rank's wall time of the step (forward/backward to metrics issued; validation excluded). */
  stepMs: number;
  valLoss?: number;
  /** The packed per-rank split + loss, summed over ranks (multi-process runs). */
  reduced?: Promise<Float32Array>;
  /** Windows each rank read (when the step's windows were not split evenly by rule). */
  batchSplit?: number[];
  /** A pipeline stage's figures, in its slot of the buffer summed over ranks (pipeline.ts). */
  pipeline?: Float32Array;
  /** This rank's WebGPU work in the step (when counted), and its CPU time not spent waiting. */
  gpu?: GpuWorkCounts & { enqueueMs: number };
}

/** The figures of a step over all ranks (this rank's own with one process). */
interface CrossRank {
  loss: number;
  computeMs: number;
  commMs: number;
  optimMs: number;
  /** The least any rank waited on communication (multi-rank runs only). */
  commExposedMs?: number;
  ranks?: RankStep[];
  /** The largest model state of any rank. */
  modelStateBytes: number;
  pipeline?: PipelineStepFigures;
}

export class StepRecorder {
  /** The last completed step's mean loss. */
  finalLoss = NaN;
  /** The largest model state any rank held (summary.memory.modelStateBytes). */
  peakModelState = 0;
  /** This rank's peak memory by category and place over the run. */
  readonly peak = fullMemoryReport({});
  /** Every step's wall time on this rank. */
  readonly stepTimes: number[] = [];
  private pending?: StepRecord;

  constructor(
    private readonly run: TrainRun,
    private readonly balancer: BatchBalancer | undefined,
  ) {}

  /** Keeps the run's peak of each memory cell. */
  notePeak(mem: Required<MemoryReport>): void {
    const { peak } = this;
    for (const c of Object.keys(peak) as Array<keyof typeof peak>) {
      peak[c].device = Math.max(peak[c].device, mem[c].device);
      peak[c].host = Math.max(peak[c].host, mem[c].host);
    }
  }

  /**
   * Issues the step's cross-rank all-reduce (multi-process runs; not awaited), with this rank's
   * loss weighted by its share of the step's windows.
   */
  issueReduce(record: StepRecord, share: number): void {
    const { opts, rank, worldSize } = this.run;
    if (!opts.comm || worldSize <= 1) return;
    const split = { computeMs: record.computeMs, commMs: record.commMs, optimMs: record.optimMs, memory: record.mem };
    const packed = packRankStep(split, rank, worldSize);
    const buf = new Float32Array(packed.length + 1 + (record.pipeline?.length ?? 0));
    buf.set(packed);
    buf[packed.length] = record.lossLocal * share;
    if (record.pipeline) buf.set(record.pipeline, packed.length + 1);
    record.reduced = opts.comm.allReduce(buf, { op: 'sum' }).then(() => buf);
    record.reduced.catch(() => undefined); // awaited in complete()
  }

  /** A finished step: completed now, or during the next step when its all-reduce is in flight. */
  async add(record: StepRecord): Promise<void> {
    if (record.reduced) this.pending = record;
    else await this.complete(record);
  }

  /** Completes the step still waiting for its cross-rank figures, if any. */
  async completePending(): Promise<void> {
    const prev = this.pending;
    if (!prev) return;
    this.pending = undefined;
    await this.complete(prev);
  }

  /** Cross-rank figures of a step, then its metrics line, events and progress (rank 0). */
  private async complete(r: StepRecord): Promise<void> {
    const x = await this.crossRank(r);
    this.peakModelState = Math.max(this.peakModelState, x.modelStateBytes);
    this.finalLoss = x.loss;
    const tokensPerSec = tokensPerStep(this.run) / (r.stepMs / 1000);
    this.writeLine(r, x, tokensPerSec);
    this.emitEvents(r, x, tokensPerSec);
    this.reportProgress(r, x, tokensPerSec);
  }

  private async crossRank(r: StepRecord): Promise<CrossRank> {
    const own = { loss: r.lossLocal, computeMs: r.computeMs, commMs: r.commMs, optimMs: r.optimMs };
    if (!r.reduced) return { ...own, modelStateBytes: modelStateBytes(r.mem) };
    const { worldSize, rank, cfg } = this.run;
    const buf = await r.reduced;
    const { pipeline } = this.run.opts;
    const n = buf.length - 1 - (r.pipeline?.length ?? 0);
    const ranks = unpackRankSteps(buf.subarray(0, n), worldSize);
    const mean = (f: (x: RankStep) => number): number => ranks.reduce((a, x) => a + f(x), 0) / worldSize;
    let msb = modelStateBytes(r.mem);
    for (const x of ranks) if (x.rank !== rank) msb = Math.max(msb, modelStateBytes(x.memory));
    // Every rank feeds the same all-reduced figures in the same step order: the same next split.
    if (cfg.balanceBatch && r.batchSplit) {
      this.balancer?.observe(
        r.batchSplit,
        ranks.map((x) => x.computeMs + x.optimMs),
      );
    }
    return {
      loss: buf[n] / this.run.dataWorld,
      computeMs: mean((x) => x.computeMs),
      commMs: mean((x) => x.commMs),
      optimMs: mean((x) => x.optimMs),
      commExposedMs: Math.min(...ranks.map((x) => x.commMs)),
      ranks,
      modelStateBytes: msb,
      ...(pipeline && r.pipeline ? { pipeline: pipeline.unpack(buf.subarray(n + 1)) } : {}),
    };
  }

  private writeLine(r: StepRecord, x: CrossRank, tokensPerSec: number): void {
    const { metricsPath, lead } = this.run;
    if (!metricsPath || !lead) return;
    const { computeMs, commMs, optimMs, commExposedMs } = x;
    const line = {
      step: r.step + 1,
      // An elastic job's world changes between restarts: each line says which world ran it.
      worldSize: this.run.worldSize,
      loss: x.loss,
      lr: r.lr,
      tokensPerSec,
      computeMs,
      commMs,
      ...(commExposedMs === undefined ? {} : { commExposedMs }),
      optimMs,
      stepMs: r.stepMs,
      gradNorm: r.gradNorm,
      memory: r.mem,
      ...(r.batchSplit ? { batchSplit: r.batchSplit } : {}),
      ...(r.valLoss !== undefined ? { valLoss: r.valLoss } : {}),
      ...(r.gpu ? { gpu: r.gpu } : {}),
      ...(x.pipeline ? { pipeline: x.pipeline } : {}),
    };
    appendFileSync(metricsPath, JSON.stringify(line) + '\n');
  }

  private emitEvents(r: StepRecord, x: CrossRank, tokensPerSec: number): void {
    const { computeMs, commMs, optimMs, commExposedMs, ranks } = x;
    this.run.emit({
      type: 'step',
      step: r.step + 1,
      loss: x.loss,
      tokensPerSec,
      computeMs,
      commMs,
      ...(commExposedMs === undefined ? {} : { commExposedMs }),
      optimMs,
      memory: r.mem,
      ...(ranks ? { ranks } : {}),
      ...(r.batchSplit ? { batchSplit: r.batchSplit } : {}),
      ...(x.pipeline ? { pipeline: x.pipeline } : {}),
    });
    if (r.valLoss !== undefined) this.run.emit({ type: 'val', step: r.step + 1, valLoss: r.valLoss });
  }

  private reportProgress(r: StepRecord, x: CrossRank, tokensPerSec: number): void {
    const { lead, opts, cfg, endStep } = this.run;
    if (!lead || !opts.onProgress) return;
    const recent = this.stepTimes.slice(-20);
    const avgMs = recent.reduce((a, b) => a + b, 0) / recent.length;
    const { commMs, commExposedMs } = x;
    opts.onProgress({
      step: r.step + 1,
      steps: cfg.steps,
      loss: x.loss,
      lr: r.lr,
      tokensPerSec,
      commFraction: commMs / r.stepMs,
      ...(commExposedMs !== undefined ? { stragglerFraction: (commMs - commExposedMs) / r.stepMs } : {}),
      etaSec: ((endStep - r.step - 1) * avgMs) / 1000,
      valLoss: r.valLoss,
    });
  }
}
