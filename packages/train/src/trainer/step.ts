// One optimizer step on this rank: forward and backward of each micro-batch (gradients stream
// into the strategy; all but the last micro-batch under the strategy's noSync when it has one,
// so k micro-batches cost one reduction), then the strategy finishes the step (communication,
// clipping, optimizer) while the previous step's record is completed, the step's device figures
// are read back together, once (step-readout.ts), and the step's own record is started with its
// cross-rank all-reduce in flight (record.ts).
import * as tf from '@tensorflow/tfjs-core';
import { gpuWorkBetween, gpuWorkCounts } from '@zeroring/backend';
import { lossValue, type BlockwiseEngine, type DeviceLoss } from '../engine.ts';
import { StepReadout } from '../step-readout.ts';
import { learningRate } from '../schedule.ts';
import { fullMemoryReport } from '../strategy.ts';
import type { PipelineRun, PipelineStepResult } from '../pipeline/runtime.ts';
import type { Batch, StepShare, TrainBatches } from './batches.ts';
import type { StepRecord, StepRecorder } from './record.ts';
import type { TrainRun } from './run.ts';

/**
 * Forward and backward of every micro-batch of `step`. Each micro-batch's loss stays on the device
 * and goes into the step's readout; the promise is of this rank's mean loss, once it is flushed.
 */
async function forwardBackward(
  run: TrainRun,
  engine: BlockwiseEngine,
  batches: TrainBatches,
  step: number,
  range: StepShare,
  readout: StepReadout,
): Promise<{ loss: Promise<number> }> {
  const { opts } = run;
  const { accum } = run.batch;
  const { strategy } = opts;
  const losses: Array<Promise<number>> = [];
  for (let m = 0; m < accum; m++) {
    const { input, targets } = batches.train(step, m, range);
    const pass = (): Promise<DeviceLoss> =>
      engine.forwardBackwardOnDevice(input, targets, strategy, strategy, { gradScale: range.share / accum });
    const loss = m < accum - 1 && strategy.noSync ? await strategy.noSync(pass) : await pass();
    losses.push(readout.add(loss.value).then((v) => lossValue(v[0], loss.gradScale)));
    tf.dispose([input, targets]);
  }
  return { loss: Promise.all(losses).then((ls) => ls.reduce((sum, l) => sum + l / accum, 0)) };
}

/**
 * The same for this rank's pipeline stage: the step's micro-batches in the schedule's order. Only
 * the last stage has a loss; time waiting for the neighbouring stages counts as communication.
 */
async function pipelinePasses(
  run: TrainRun,
  pipeline: PipelineRun,
  batches: TrainBatches,
  step: number,
  range: StepShare,
  readout: StepReadout,
): Promise<{ loss: Promise<number>; result: PipelineStepResult }> {
  const held: Batch[] = [];
  const micro = (m: number): Batch => (held[m] ??= batches.train(step, m, range));
  const readLoss = (l: DeviceLoss): Promise<number> => readout.add(l.value).then((v) => lossValue(v[0], l.gradScale));
  try {
    const gradScale = range.share / run.batch.accum;
    const result = await pipeline.step(run.opts.strategy, micro, range.count, gradScale, readLoss);
    return { loss: result.loss ?? Promise.resolve(0), result };
  } finally {
    tf.dispose(held.flatMap((b) => [b.input, b.targets]));
  }
}

/**
 * Runs `step` and returns its record, to be completed by the recorder. The step's device figures
 * (losses, gradient norm, non-finite flag) are read back once, after the optimizer is issued: the
 * step's one wait for the device, where nothing more is left to enqueue.
 */
export async function trainStep(
  run: TrainRun,
  engine: BlockwiseEngine,
  batches: TrainBatches,
  recorder: StepRecorder,
  step: number,
): Promise<StepRecord> {
  const { strategy } = run.opts;
  const work0 = run.cfg.countGpuWork ? gpuWorkCounts() : undefined;
  const readout = new StepReadout();
  try {
    const t0 = performance.now();
    const range = batches.share();
    const { pipeline } = run.opts;
    const piped = pipeline ? await pipelinePasses(run, pipeline, batches, step, range, readout) : undefined;
    const { loss } = piped ?? (await forwardBackward(run, engine, batches, step, range, readout));
    const t1 = performance.now();
    const waitMs = piped?.result.waitMs ?? 0;
    const lr = learningRate(run.schedule, step);
    // The previous step's record is finished while this step's gradients are on the wire (its
    // metrics all-reduce went out before them, so it is done): rank 0's file writes, events and
    // progress line then cost nothing on the path the other ranks wait for.
    const finishing = strategy.finishStep({ lr, step, maxGradNorm: run.maxGradNorm, readout });
    finishing.catch(() => undefined); // awaited just below; a failure must not count as unhandled meanwhile
    await recorder.completePending();
    const stats = await finishing;
    const flushStart = performance.now();
    await readout.flush();
    const late = stats.later ? await stats.later : undefined;
    // The optimizer's time includes the device finishing the step's work, which the flush waited for.
    const optimMs = stats.optimMs + (performance.now() - flushStart) - (late?.commMs ?? 0);
    const lossLocal = await loss;

    const mem = fullMemoryReport(strategy.memory());
    const activations = piped ? piped.result.peakActivationBytes : engine.lastActivationBytes;
    mem.activations.device = Math.max(mem.activations.device, activations);
    recorder.notePeak(mem);
    const record: StepRecord = {
      step,
      lr,
      lossLocal,
      computeMs: t1 - t0 - waitMs,
      commMs: waitMs + stats.commMs + (late?.commMs ?? 0),
      optimMs,
      gradNorm: late ? late.gradNorm : stats.gradNorm,
      mem,
      stepMs: 0,
      batchSplit: range.batchSplit,
      ...(piped ? { pipeline: piped.result.packed } : {}),
    };
    // Issued, not awaited: the record is completed during the next step (or after the loop), so
    // this small collective never holds a rank back waiting for a slower one.
    // A pipeline's loss is its last stage's: the other stages add nothing to the mean.
    recorder.issueReduce(record, pipeline && !pipeline.isLast ? 0 : range.share);
    record.stepMs = performance.now() - t0;
    if (work0) {
      const work = gpuWorkBetween(work0, gpuWorkCounts());
      record.gpu = { ...work, enqueueMs: record.stepMs - work.waitMs };
    }
    recorder.stepTimes.push(record.stepMs);
    return record;
  } finally {
    readout.dispose();
  }
}
