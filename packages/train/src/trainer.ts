// The training loop behind `zeroring train`, for any Strategy and any world size. Per step: the
// sampler picks this rank's windows, the engine runs forward and backward into the strategy, the
// strategy finishes the step, and rank 0 records a metrics line. Everything random is a pure
// function of (seed, step), so `--resume` continues exactly. train() reads as the run's steps,
// each in trainer/ (run, resume, batches, step, evaluate, record, checkpoint, summary).
// Details: docs/internals.md#trainer
import { writeFileSync } from 'node:fs';
import { BlockwiseEngine } from './engine.ts';
import { TrainBatches } from './trainer/batches.ts';
import { saveRunCheckpoint } from './trainer/checkpoint.ts';
import { evaluate } from './trainer/evaluate.ts';
import { StepRecorder } from './trainer/record.ts';
import { resumeRun, type StartPoint } from './trainer/resume.ts';
import { emitConfig, prepareRun, type TrainRun } from './trainer/run.ts';
import { trainStep } from './trainer/step.ts';
import { finishRun } from './trainer/summary.ts';
import type { TrainSummary, TrainerOptions } from './trainer/types.ts';

export {
  TrainerError,
  type Progress,
  type TrainConfig,
  type TrainerComm,
  type TrainerOptions,
  type TrainSummary,
  type WindowData,
} from './trainer/types.ts';

/** Validate after this step: every evalInterval steps, and after the run's last step (also when stopped early). */
function validationDue(run: TrainRun, step: number): boolean {
  return run.doEval && ((step + 1) % run.cfg.evalInterval === 0 || step === run.endStep - 1);
}

/** Checkpoint after this step: every checkpointInterval steps, except the last (saved after the loop). */
function checkpointDue(run: TrainRun, step: number): boolean {
  const every = run.cfg.checkpointInterval ?? 0;
  return every > 0 && (step + 1) % every === 0 && step + 1 < run.endStep;
}

export async function train(opts: TrainerOptions): Promise<TrainSummary> {
  const run = prepareRun(opts);
  const engine = new BlockwiseEngine(opts.model);
  await opts.strategy.setup(opts.model, opts.model.initParams(run.cfg.seed));
  const start: StartPoint | { finished: TrainSummary } =
    opts.resume || opts.resumeFrom ? await resumeRun(run) : { startStep: 0, initialValLoss: null };
  if ('finished' in start) return start.finished;
  if (run.metricsPath && run.lead && !opts.resume) writeFileSync(run.metricsPath, '');
  emitConfig(run);

  const batches = new TrainBatches(run, start.resumedSplit);
  const recorder = new StepRecorder(run, batches.balancer);
  const end = { initialValLoss: start.initialValLoss, finalValLoss: null as number | null };
  if (run.doEval && start.startStep === 0) {
    end.initialValLoss = end.finalValLoss = await evaluate(run, engine, batches);
    run.emit({ type: 'val', step: 0, valLoss: end.initialValLoss });
  }
  for (let step = start.startStep; step < run.endStep; step++) {
    const record = await trainStep(run, engine, batches, recorder, step);
    if (validationDue(run, step)) end.finalValLoss = record.valLoss = await evaluate(run, engine, batches);
    await recorder.add(record);
    if (checkpointDue(run, step)) {
      // Every step the checkpoint holds has its metrics line: one that died before the next step
      // completed it would leave a gap in metrics.jsonl after a restart from this checkpoint.
      await recorder.completePending();
      await saveRunCheckpoint(run, step + 1, end.initialValLoss, batches.balancer);
    }
  }
  await recorder.completePending();
  if (opts.outDir && run.endStep > start.startStep) {
    await saveRunCheckpoint(run, run.endStep, end.initialValLoss, batches.balancer);
  }
  return finishRun(run, recorder, { ...end, resumedFrom: start.resumedFrom, resumeRead: start.resumeRead });
}
