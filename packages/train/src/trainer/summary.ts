// The end of a run: the final parameters' checksum, an optional text sample (rank 0), and the
// summary (DESIGN.md "Contracts"), written to summary.json by rank 0 and sent as the done event.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { median, paramChecksum } from '../metrics.ts';
import type { StepRecorder } from './record.ts';
import { tokensPerStep, type TrainRun } from './run.ts';
import type { TrainSummary } from './types.ts';

export interface RunEnd {
  initialValLoss: number | null;
  finalValLoss: number | null;
  resumedFrom?: number;
  resumeRead?: TrainSummary['resumeRead'];
}

/** Builds, writes and announces the run's summary (fullParams is collective: every rank calls this). */
export async function finishRun(run: TrainRun, recorder: StepRecorder, end: RunEnd): Promise<TrainSummary> {
  const { opts, lead, endStep } = run;
  const finalParams = await opts.strategy.fullParams();
  const checksum = paramChecksum(finalParams);
  let sample: string | undefined;
  if (lead && opts.sample) {
    sample = await opts.sample(finalParams);
    run.emit({ type: 'sample', step: endStep, text: sample });
  }
  const { stepTimes } = recorder;
  const summary: TrainSummary = {
    config: run.runConfig,
    steps: endStep,
    paramCount: run.paramCount,
    finalLoss: recorder.finalLoss,
    finalValLoss: end.finalValLoss,
    initialValLoss: end.initialValLoss,
    paramChecksum: checksum,
    memory: { modelStateBytes: recorder.peakModelState, peak: recorder.peak },
    strategy: opts.strategy.name,
    worldSize: run.worldSize,
    tokensPerSec: stepTimes.length ? tokensPerStep(run) / (median(stepTimes) / 1000) : 0,
    wallSeconds: (performance.now() - run.started) / 1000,
    ...(sample !== undefined ? { sample } : {}),
    ...(end.resumedFrom !== undefined ? { resumedFrom: end.resumedFrom } : {}),
    ...(end.resumeRead ? { resumeRead: end.resumeRead } : {}),
  };
  if (opts.outDir && lead) writeFileSync(join(opts.outDir, 'summary.json'), JSON.stringify(summary, null, 2) + '\n');
  run.emit({ type: 'done', summary: summary as unknown as Record<string, unknown> });
  return summary;
}
