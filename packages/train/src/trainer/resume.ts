// Where a run starts: at step 0, or with --resume from the newest complete checkpoint. Every
// rank loads its own shard into the strategy and reads trainer.json (the next step, the first
// validation loss, the batch split a balancing run had reached), so a resumed run continues
// exactly. A resume that finds the run already at its last step trains nothing (see
// summaryOfFinishedRun).
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CheckpointError, loadLatestCheckpoint, readModelParams, type LoadedCheckpoint } from '../checkpoint.ts';
import { median, paramChecksum } from '../metrics.ts';
import { fullMemoryReport, modelStateBytes, type MemoryReport } from '../strategy.ts';
import type { TrainRun } from './run.ts';
import { TrainerError, type TrainSummary } from './types.ts';

export interface StartPoint {
  startStep: number;
  /** The checkpoint's step, when resumed. */
  resumedFrom?: number;
  initialValLoss: number | null;
  /** With balanceBatch, the split the interrupted run had reached, to go on from. */
  resumedSplit?: number[];
}

/** What trainer.json holds (written by checkpoint.ts in this folder). */
interface TrainerJson {
  nextStep?: unknown;
  worldSize?: unknown;
  batchSplit?: unknown;
  initialValLoss?: unknown;
}

/** The fields of the run configuration that a resumed run must share to continue exactly. */
const MUST_MATCH = ['steps', 'batchSize', 'blockSize', 'lr', 'seed', 'strategy', 'maxGradNorm'] as const;

/**
 * Loads the newest complete checkpoint into the strategy and says where to go on from, or
 * returns the run's summary when it had already reached its last step.
 */
export async function resumeRun(run: TrainRun): Promise<StartPoint | { finished: TrainSummary }> {
  const { opts, rank, worldSize, checkpointRoot } = run;
  if (!checkpointRoot) throw new TrainerError('resume needs an output directory holding checkpoints/, got none');
  const ck = await loadLatestCheckpoint(checkpointRoot, rank, worldSize, opts.warn);
  await opts.strategy.loadState(ck.shard);
  const tr = ck.common['trainer.json'] as TrainerJson | undefined;
  if (typeof tr?.nextStep !== 'number') throw new CheckpointError(`${ck.dir}/trainer.json lacks nextStep`);
  const start: StartPoint = {
    startStep: tr.nextStep,
    resumedFrom: ck.step,
    initialValLoss: typeof tr.initialValLoss === 'number' ? tr.initialValLoss : null,
  };
  if (start.startStep >= run.endStep) {
    return { finished: await summaryOfFinishedRun(run, ck.dir, start.startStep, start.initialValLoss) };
  }
  const split = tr.batchSplit;
  const sum = Array.isArray(split) ? split.reduce((a: number, n: number) => a + n, 0) : NaN;
  if (run.cfg.balanceBatch && tr.worldSize === worldSize && sum === worldSize * run.B) {
    start.resumedSplit = split as number[];
  }
  warnConfigChanges(run, ck);
  return start;
}

/** A resumed run continues exactly only with the same schedule and data order. */
function warnConfigChanges(run: TrainRun, ck: LoadedCheckpoint): void {
  const saved = ck.common['config.json'] as Record<string, unknown> | undefined;
  for (const key of MUST_MATCH) {
    const was = saved?.[key];
    const now = run.runConfig[key];
    if (was !== undefined && JSON.stringify(was) !== JSON.stringify(now)) {
      run.opts.warn?.(
        `resuming ${ck.dir} with ${key} ${JSON.stringify(now)} (checkpoint has ${JSON.stringify(was)}): ` +
          'the run will not match an uninterrupted one',
      );
    }
  }
}

/**
 * A resume that finds the run already at its last step trains nothing and changes nothing: its
 * summary.json is the run's own. Only when the run ended between its last checkpoint and its
 * summary is the summary rebuilt, from the checkpoint's parameters and the metrics lines, and
 * written. Every rank takes this path alike (the step is in every rank's checkpoint), with no
 * collective.
 */
async function summaryOfFinishedRun(
  run: TrainRun,
  checkpointDir: string,
  step: number,
  initialValLoss: number | null,
): Promise<TrainSummary> {
  const path = join(run.opts.outDir!, 'summary.json');
  if (existsSync(path)) return { ...(JSON.parse(readFileSync(path, 'utf8')) as TrainSummary), alreadyFinished: true };
  const summary = await rebuildSummary(run, checkpointDir, step, initialValLoss);
  if (run.lead) writeFileSync(path, JSON.stringify(summary, null, 2) + '\n');
  return { ...summary, alreadyFinished: true };
}

interface MetricsLine {
  loss: number;
  valLoss?: number;
  stepMs: number;
  memory: MemoryReport;
}

async function rebuildSummary(
  run: TrainRun,
  checkpointDir: string,
  step: number,
  initialValLoss: number | null,
): Promise<TrainSummary> {
  const { runConfig, worldSize } = run;
  const metricsPath = join(run.opts.outDir!, 'metrics.jsonl');
  const text = existsSync(metricsPath) ? readFileSync(metricsPath, 'utf8') : '';
  const lines = text ? text.trim().split('\n').filter(Boolean) : [];
  const metrics = lines.map((l) => JSON.parse(l) as MetricsLine);
  const peak = fullMemoryReport({});
  for (const m of metrics) {
    for (const c of Object.keys(peak) as Array<keyof typeof peak>) {
      peak[c].device = Math.max(peak[c].device, m.memory[c]?.device ?? 0);
      peak[c].host = Math.max(peak[c].host, m.memory[c]?.host ?? 0);
    }
  }
  const valLosses = metrics.filter((m) => m.valLoss !== undefined).map((m) => m.valLoss!);
  const stepTokens = (runConfig.batchSize as number) * (runConfig.blockSize as number) * worldSize;
  const accum = (runConfig.gradAccumSteps as number | undefined) ?? 1;
  const medianMs = median(metrics.map((m) => m.stepMs));
  return {
    config: runConfig,
    steps: step,
    paramCount: run.paramCount,
    finalLoss: metrics.at(-1)?.loss ?? NaN,
    finalValLoss: valLosses.at(-1) ?? null,
    initialValLoss,
    paramChecksum: paramChecksum(await readModelParams(checkpointDir)),
    memory: { modelStateBytes: modelStateBytes(peak), peak },
    strategy: run.opts.strategy.name,
    worldSize,
    tokensPerSec: metrics.length ? (stepTokens * accum) / (medianMs / 1000) : 0,
    wallSeconds: 0,
    resumedFrom: step,
  };
}
