// Where a run starts: at step 0, or with --resume from the newest complete checkpoint, saved at
// any world size by any strategy. Every rank reads the ranges of model state its strategy holds
// and trainer.json (the next step, the global batch, the first validation loss, the batch split a
// balancing run had reached); the global batch is re-split over the ranks there are now, so a
// resumed run continues the same training. A resume that finds the run already at its last step
// trains nothing (see summaryOfFinishedRun).
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CheckpointError, readModelParams } from '../checkpoint.ts';
import { loadLatestCheckpoint, type LoadedCheckpoint } from '../checkpoint-source.ts';
import { openConsolidated } from '../consolidated.ts';
import { resplitPlan } from './batch-plan.ts';
import { paramCount } from '../model.ts';
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
  /** The most state bytes a rank read to resume, and the whole state's. */
  resumeRead?: TrainSummary['resumeRead'];
}

/** What trainer.json holds (written by checkpoint.ts in this folder). */
interface TrainerJson {
  nextStep?: unknown;
  worldSize?: unknown;
  strategy?: unknown;
  globalBatch?: unknown;
  windowsSeen?: unknown;
  batchSplit?: unknown;
  initialValLoss?: unknown;
}

/** The fields of the run configuration that a resumed run must share to continue exactly. */
const MUST_MATCH = ['steps', 'blockSize', 'lr', 'seed', 'maxGradNorm'] as const;

/**
 * Loads the newest complete checkpoint into the strategy and says where to go on from, or
 * returns the run's summary when it had already reached its last step.
 */
export async function resumeRun(run: TrainRun): Promise<StartPoint | { finished: TrainSummary }> {
  const { opts, worldSize, checkpointRoot } = run;
  const comm = opts.comm;
  const agree =
    comm && worldSize > 1
      ? async (ok: boolean): Promise<boolean> => {
          const flag = new Float32Array([ok ? 1 : 0]);
          await comm.allReduce(flag, { op: 'min' });
          return flag[0] === 1;
        }
      : undefined;
  const load = (c: ResumePoint): Promise<void> => opts.strategy.loadState(c.source);
  let ck: ResumePoint;
  if (opts.resumeFrom) {
    ck = await loadConsolidated(opts.resumeFrom, load, agree);
  } else {
    if (!checkpointRoot) throw new TrainerError('resume needs an output directory holding checkpoints/, got none');
    ck = await loadLatestCheckpoint(checkpointRoot, load, { warn: opts.warn, agree });
  }
  const tr = ck.common['trainer.json'] as TrainerJson | undefined;
  if (typeof tr?.nextStep !== 'number') throw new CheckpointError(`${ck.dir}/trainer.json lacks nextStep`);
  const start: StartPoint = {
    startStep: tr.nextStep,
    resumedFrom: ck.step,
    initialValLoss: typeof tr.initialValLoss === 'number' ? tr.initialValLoss : null,
  };
  if (start.startStep >= run.endStep && opts.resumeFrom) {
    throw new TrainerError(
      `${opts.resumeFrom} is at step ${start.startStep}, expected --steps above it to train on (got ${run.endStep})`,
    );
  }
  if (start.startStep >= run.endStep) {
    return { finished: await summaryOfFinishedRun(run, ck.dir, start.startStep, start.initialValLoss) };
  }
  keepGlobalBatch(run, ck, tr);
  start.resumeRead = await stateRead(run, ck);
  const split = tr.batchSplit;
  const sum = Array.isArray(split) ? split.reduce((a: number, n: number) => a + n, 0) : NaN;
  if (run.cfg.balanceBatch && tr.worldSize === worldSize && sum === run.batch.micro) {
    start.resumedSplit = split as number[];
  }
  warnConfigChanges(run, ck);
  opts.info?.(resumeMessage(run, ck));
  return start;
}

/** What a run resumes from: a checkpoint directory, or a consolidated file. */
type ResumePoint = Pick<LoadedCheckpoint, 'dir' | 'step' | 'source' | 'common'>;

/** A file from `zeroring consolidate`, loaded on every rank; all fail alike when one cannot. */
async function loadConsolidated(
  path: string,
  load: (c: ResumePoint) => Promise<void>,
  agree?: (ok: boolean) => Promise<boolean>,
): Promise<ResumePoint> {
  let failure: Error | undefined;
  let point: ResumePoint | undefined;
  try {
    point = { dir: path, ...(await openConsolidated(path)) };
    await load(point);
  } catch (err) {
    failure = err as Error;
  }
  const ok = agree ? await agree(failure === undefined) : failure === undefined;
  if (!ok || !point) throw failure ?? new CheckpointError(`${path}: another rank could not load it`);
  return point;
}

/**
 * The saved run's global batch, re-split over this world when it differs from what this run's
 * flags would give (another world size); checkpoints of the first format recorded none.
 */
function keepGlobalBatch(run: TrainRun, ck: ResumePoint, tr: TrainerJson): void {
  const global = typeof tr.globalBatch === 'number' ? tr.globalBatch : undefined;
  if (typeof tr.windowsSeen === 'number' && global !== undefined && tr.windowsSeen !== ck.step * global) {
    throw new CheckpointError(
      `${ck.dir}/trainer.json has windowsSeen ${tr.windowsSeen}, expected step ${ck.step} x globalBatch ${global}`,
    );
  }
  if (global !== undefined && global !== run.batch.global) {
    if (run.opts.pipeline) {
      throw new CheckpointError(
        `${ck.dir} was saved with a global batch of ${global} windows, this pipeline run has ${run.batch.global}: ` +
          'pass --batch-size and --micro-batches that give the same global batch',
      );
    }
    run.batch = resplitPlan(global, run.dataWorld, run.B);
    if (run.cfg.batchSplit) {
      run.opts.warn?.(
        `--batch-split [${run.cfg.batchSplit.join(', ')}] ignored: the resumed global batch of ${global} ` +
          `windows is split as ${run.batch.split ? `[${run.batch.split.join(', ')}]` : 'evenly'}`,
      );
    }
  }
}

/** What the ranks read of the saved state (one small all-reduce: the largest rank's figure). */
async function stateRead(run: TrainRun, ck: ResumePoint): Promise<TrainSummary['resumeRead']> {
  const comm = run.opts.comm;
  const stateBytes = 12 * ck.source.params.reduce((a, p) => a + paramCount(p), 0);
  if (!comm || run.worldSize === 1) return { maxRankBytes: ck.source.bytesRead, stateBytes };
  // float32 holds byte counts to within a few bytes in this range: close enough for a figure.
  const max = new Float32Array([ck.source.bytesRead]);
  await comm.allReduce(max, { op: 'max' });
  return { maxRankBytes: max[0], stateBytes };
}

function resumeMessage(run: TrainRun, ck: ResumePoint): string {
  const { savedBy } = ck.source;
  const { global, accum, micro, split } = run.batch;
  const perRank = split ? `[${split.join(', ')}]` : String(micro / run.dataWorld);
  const mb = (n: number): string => `${(n / 2 ** 20).toFixed(1)} MB`;
  return (
    `resumed at step ${ck.step} from ${ck.dir} (saved by ${savedBy.worldSize} ${savedBy.strategy} rank(s); ` +
    `now ${run.worldSize} ${run.opts.strategy.name} rank(s)); global batch ${global} windows = ${accum} ` +
    `micro-batch(es) x ${perRank} per rank; this rank read ${mb(ck.source.bytesRead)} of model state`
  );
}

/** A resumed run continues exactly only with the same schedule and data order. */
function warnConfigChanges(run: TrainRun, ck: ResumePoint): void {
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
