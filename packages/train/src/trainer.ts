// The training loop behind `zeroring train`, for any Strategy and any world size.
//
// Per step: the distributed sampler picks this rank's windows (its even share of the step's, or
// its part of an uneven split: config.batchSplit / balanceBatch, batch-balance.ts), the blockwise
// engine runs forward and backward (gradients stream into the strategy), the strategy finishes the
// step (communication, clipping, optimizer), and rank 0 records a metrics line. Validation runs every
// `evalInterval` steps on a fixed seeded set of windows split across ranks. Checkpoints hold each
// rank's shard plus the full model, so `--resume` continues exactly: everything random here is a
// pure function of (seed, step), and the strategy's state restores bit for bit.
//
// Cross-rank numbers (mean loss, validation, max memory) go through a small TrainerComm, which a
// ProcessGroup satisfies; with one process none is needed. A step's metrics all-reduce is issued
// and not awaited: the step's record (metrics line, events, progress) is completed during the next
// step while its gradients are on the wire, so neither that collective nor rank 0's bookkeeping is
// a per-step sync point that holds the other ranks back.
import * as tf from '@tensorflow/tfjs-core';
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BlockwiseEngine } from './engine.ts';
import { uniqueParams, paramCount, type BlockModel } from './model.ts';
import { fullMemoryReport, modelStateBytes, type MemoryReport, type Strategy } from './strategy.ts';
import { packRankStep, unpackRankSteps, type OnTrainEvent, type RankStep, type TrainEvent } from './events.ts';
import { DistributedSampler, fixedWindows, mixSeed } from './sampler.ts';
import { BatchBalancer } from './batch-balance.ts';
import { learningRate } from './schedule.ts';
import { encodeShard, loadLatestCheckpoint, readModelParams, saveCheckpoint, CheckpointError } from './checkpoint.ts';
import { median, paramChecksum } from './metrics.ts';

export class TrainerError extends Error {
  override name = 'TrainerError';
}

/** Token windows: what @zeroring/gpt's TextDataset provides. */
export interface WindowData {
  windowStarts(split: 'train' | 'val', blockSize: number, stride?: number): Int32Array;
  batchAt(starts: ArrayLike<number>, blockSize: number): { input: Int32Array; targets: Int32Array };
}

/** The collectives the trainer itself needs (a ProcessGroup has them). */
export interface TrainerComm {
  rank: number;
  worldSize: number;
  allReduce(buf: Float32Array, opts?: { op?: 'sum' | 'avg' | 'max' | 'min' }): Promise<unknown>;
  barrier(): Promise<unknown>;
}

export interface TrainConfig {
  /** Total optimizer steps of the run (also the end of the cosine decay unless decaySteps is set). */
  steps: number;
  /** Windows per rank per micro-batch. */
  batchSize: number;
  /** Micro-batches accumulated into each optimizer step (gradients averaged); default 1. */
  gradAccumSteps?: number;
  /** Window length T (the model's context). */
  blockSize: number;
  lr: number;
  /** Floor of the cosine schedule; default lr / 10 (nanoGPT). */
  minLr?: number;
  /** Linear warmup steps; default min(100, steps / 10). */
  warmupSteps?: number;
  decaySteps?: number;
  /** Global gradient-norm clip; default 1.0 as nanoGPT, 0 disables. */
  maxGradNorm?: number;
  seed: number;
  /** Validate every K steps (and before the first and after the last step). 0 disables. */
  evalInterval: number;
  /** Validation batches (of batchSize windows) in the fixed validation set. */
  evalBatches: number;
  /**
   * Windows each rank reads per micro-batch, in rank order, summing to world size × batchSize
   * (default batchSize each): for ranks of known unequal speed. The step reads the same windows
   * and its gradient is the same mean however they are split (batch-balance.ts).
   */
  batchSplit?: number[];
  /**
   * Re-split every step's windows toward the ranks measured faster (batch-balance.ts), starting
   * from batchSplit, or on resume from the split the checkpoint recorded (same world size). The
   * parameters stay those of the even split up to float rounding, so a resumed run matches an
   * uninterrupted one only to rounding. Default false.
   */
  balanceBatch?: boolean;
  /** Save a checkpoint every K steps (and at the end when outDir is set). 0: only at the end. */
  checkpointInterval?: number;
  keepCheckpoints?: number;
}

export interface Progress {
  step: number;
  steps: number;
  loss: number;
  lr: number;
  tokensPerSec: number;
  /** Share of the step spent waiting on communication (mean over ranks). */
  commFraction: number;
  /** The part of commFraction spent waiting for slower ranks rather than for the wire (multi-process runs). */
  stragglerFraction?: number;
  etaSec: number;
  valLoss?: number;
}

export interface TrainerOptions {
  model: BlockModel;
  strategy: Strategy;
  data: WindowData;
  config: TrainConfig;
  /** Where metrics.jsonl, summary.json and checkpoints/ go; nothing is written without it. */
  outDir?: string;
  /** Continue from the newest complete checkpoint in outDir/checkpoints. */
  resume?: boolean;
  /** Stop after this step count even though the schedule is for config.steps (an interrupted run). */
  stopAfterSteps?: number;
  comm?: TrainerComm;
  onEvent?: OnTrainEvent;
  onProgress?: (p: Progress) => void;
  /** Warnings (e.g. a corrupt checkpoint skipped). */
  warn?: (msg: string) => void;
  /** Recorded as summary.config and the checkpoint's config.json (model preset, backend, CLI flags...). */
  runConfig?: Record<string, unknown>;
  /** Extra JSON files for every checkpoint, e.g. { 'tokenizer.json': tokenizer.toJSON() }. */
  checkpointFiles?: Record<string, unknown>;
  /** Produce a text sample from the final parameters (rank 0, at the end). */
  sample?: (params: Map<string, Float32Array>) => Promise<string> | string;
  backendName?: string;
}

export interface TrainSummary {
  config: Record<string, unknown>;
  steps: number;
  paramCount: number;
  finalLoss: number;
  finalValLoss: number | null;
  initialValLoss: number | null;
  paramChecksum: number;
  memory: { modelStateBytes: number; peak: Required<MemoryReport> };
  strategy: string;
  worldSize: number;
  tokensPerSec: number;
  wallSeconds: number;
  sample?: string;
  resumedFrom?: number;
  /** Set (and nothing written) when a resume found the run already at its last step. */
  alreadyFinished?: boolean;
}

export async function train(opts: TrainerOptions): Promise<TrainSummary> {
  const { model, strategy, data, config: cfg, outDir, comm } = opts;
  const rank = comm?.rank ?? 0;
  const worldSize = comm?.worldSize ?? 1;
  const lead = rank === 0;
  const accum = cfg.gradAccumSteps ?? 1;
  for (const [k, v] of [['steps', cfg.steps], ['batchSize', cfg.batchSize], ['blockSize', cfg.blockSize], ['gradAccumSteps', accum]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new TrainerError(`config.${k} = ${v}, expected a positive integer`);
  }
  if (!(cfg.lr > 0)) throw new TrainerError(`config.lr = ${cfg.lr}, expected a positive number`);
  const schedule = {
    lr: cfg.lr,
    minLr: cfg.minLr ?? cfg.lr / 10,
    warmupSteps: cfg.warmupSteps ?? Math.min(100, Math.floor(cfg.steps / 10)),
    decaySteps: cfg.decaySteps ?? cfg.steps,
  };
  const maxGradNorm = cfg.maxGradNorm ?? 1.0;
  const emit = (e: TrainEvent) => {
    if (!lead || !opts.onEvent) return;
    try {
      opts.onEvent(e);
    } catch {
      // The hook's failures are its own (events.ts); training goes on.
    }
  };
  const runConfig = { ...opts.runConfig, ...cfg, schedule, maxGradNorm, strategy: strategy.name, worldSize };
  const T = cfg.blockSize;
  const B = cfg.batchSize;
  const nParams = uniqueParams(model).reduce((n, s) => n + paramCount(s), 0);
  const started = performance.now();

  const metricsPath = outDir ? join(outDir, 'metrics.jsonl') : undefined;
  const ckptRoot = outDir ? join(outDir, 'checkpoints') : undefined;
  if (outDir && lead) mkdirSync(outDir, { recursive: true });

  const engine = new BlockwiseEngine(model);
  await strategy.setup(model, model.initParams(cfg.seed));

  const endStep = Math.min(cfg.steps, opts.stopAfterSteps ?? cfg.steps);
  let startStep = 0;
  let resumedFrom: number | undefined;
  let initialValLoss: number | null = null;
  // With balanceBatch, the split the interrupted run had reached (trainer.json), to go on from.
  let resumedSplit: number[] | undefined;
  if (opts.resume) {
    if (!ckptRoot) throw new TrainerError('resume needs an output directory holding checkpoints/, got none');
    const ck = await loadLatestCheckpoint(ckptRoot, rank, worldSize, opts.warn);
    await strategy.loadState(ck.shard);
    const tr = ck.common['trainer.json'] as
      | { nextStep?: unknown; worldSize?: unknown; batchSplit?: unknown; initialValLoss?: unknown }
      | undefined;
    if (typeof tr?.nextStep !== 'number') throw new CheckpointError(`${ck.dir}/trainer.json lacks nextStep`);
    startStep = tr.nextStep;
    resumedFrom = ck.step;
    if (typeof tr.initialValLoss === 'number') initialValLoss = tr.initialValLoss;
    if (startStep >= endStep) {
      const finished = { outDir: outDir!, checkpointDir: ck.dir, step: startStep, lead, initialValLoss };
      return summaryOfFinishedRun({ ...finished, runConfig, strategy: strategy.name, worldSize, paramCount: nParams });
    }
    const split = tr.batchSplit;
    if (cfg.balanceBatch && tr.worldSize === worldSize && Array.isArray(split) && split.reduce((a: number, n: number) => a + n, 0) === worldSize * B) resumedSplit = split as number[];
    // A resumed run continues exactly only with the same schedule and data order.
    const saved = ck.common['config.json'] as Record<string, unknown> | undefined;
    for (const key of ['steps', 'batchSize', 'blockSize', 'lr', 'seed', 'strategy', 'maxGradNorm'] as const) {
      const was = saved?.[key];
      const now = (runConfig as Record<string, unknown>)[key];
      if (was !== undefined && JSON.stringify(was) !== JSON.stringify(now)) {
        opts.warn?.(`resuming ${ck.dir} with ${key} ${JSON.stringify(now)} (checkpoint has ${JSON.stringify(was)}): the run will not match an uninterrupted one`);
      }
    }
  }
  if (metricsPath && lead && !opts.resume) writeFileSync(metricsPath, '');

  emit({ type: 'config', config: runConfig, paramCount: nParams, strategy: strategy.name, backend: opts.backendName ?? tf.getBackend(), worldSize });

  // ---- data ----
  const trainStarts = data.windowStarts('train', T);
  const valStarts = data.windowStarts('val', T);
  const sampler = new DistributedSampler({ numWindows: trainStarts.length, batchSize: B, rank, worldSize, seed: mixSeed(cfg.seed, 1) });
  // Holds the split (validating config.batchSplit); it only moves with balanceBatch and several
  // ranks, and then a resumed run starts from the split it had reached rather than from scratch.
  const balancer = cfg.batchSplit || (cfg.balanceBatch && worldSize > 1) ? new BatchBalancer({ total: worldSize * B, worldSize, initial: resumedSplit ?? cfg.batchSplit }) : undefined;
  const valChoice = fixedWindows(valStarts.length, cfg.evalBatches * B, mixSeed(cfg.seed, 2));

  const makeBatch = (starts: ArrayLike<number>) => {
    const b = data.batchAt(starts, T);
    return { input: tf.tensor(b.input, [starts.length, T], 'int32'), targets: tf.tensor(b.targets, [starts.length, T], 'int32') };
  };

  const reduce = async (values: number[], op: 'sum' | 'avg' | 'max'): Promise<number[]> => {
    if (!comm || worldSize === 1) return values;
    const buf = Float32Array.from(values);
    await comm.allReduce(buf, { op });
    return [...buf];
  };

  const evaluate = async (): Promise<number> => {
    let sum = 0;
    let count = 0;
    // Every rank runs the same number of forwards (a ZeRO-3 forward is collective); a rank whose
    // share ran out repeats a batch with weight 0.
    const rounds = Math.ceil(cfg.evalBatches / worldSize);
    for (let j = 0; j < rounds; j++) {
      const b = j * worldSize + rank;
      const real = b < cfg.evalBatches;
      const bb = real ? b : b % cfg.evalBatches;
      const starts = Array.from(valChoice.subarray(bb * B, (bb + 1) * B), (i) => valStarts[i]);
      const { input, targets } = makeBatch(starts);
      const l = await engine.evalLoss(input, targets, strategy);
      tf.dispose([input, targets]);
      if (real) {
        sum += l;
        count += 1;
      }
    }
    const [s, c] = await reduce([sum, count], 'sum');
    return s / c;
  };

  const checkpoint = async (nextStep: number): Promise<void> => {
    if (!ckptRoot) return;
    const shard = await strategy.saveState();
    const full = await strategy.fullParams();
    await saveCheckpoint({
      root: ckptRoot,
      step: nextStep,
      rank,
      worldSize,
      shard,
      keep: cfg.keepCheckpoints,
      barrier: comm && worldSize > 1 ? async () => void (await comm.barrier()) : undefined,
      common: {
        'config.json': runConfig,
        'trainer.json': {
          nextStep,
          seed: cfg.seed,
          worldSize,
          strategy: strategy.name,
          initialValLoss,
          ...(balancer && cfg.balanceBatch ? { batchSplit: [...balancer.split] } : {}),
        },
        'model.bin': encodeShard({ meta: { kind: 'full-params' }, arrays: full }),
        ...opts.checkpointFiles,
      },
    });
  };

  // ---- loop ----
  const doEval = cfg.evalInterval > 0 && cfg.evalBatches > 0;
  let finalValLoss: number | null = null;
  if (doEval && startStep === 0) {
    initialValLoss = await evaluate();
    finalValLoss = initialValLoss;
    emit({ type: 'val', step: 0, valLoss: initialValLoss });
  }
  let finalLoss = NaN;
  let peakModelState = 0;
  const peak = fullMemoryReport({});
  const stepTimes: number[] = [];
  const tokensPerStep = worldSize * B * T * accum;

  /** A step whose cross-rank metrics all-reduce may still be in flight. */
  interface PendingRecord {
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
  }
  let pending: PendingRecord | undefined;

  /** Cross-rank figures of a step, then its metrics line, events and progress (rank 0). */
  const completeRecord = async (r: PendingRecord): Promise<void> => {
    let loss = r.lossLocal;
    let { computeMs, commMs, optimMs } = r;
    let ranks: RankStep[] | undefined;
    let commExposedMs: number | undefined;
    let msb = modelStateBytes(r.mem);
    if (r.reduced) {
      const buf = await r.reduced;
      const n = buf.length - 1;
      ranks = unpackRankSteps(buf.subarray(0, n), worldSize);
      loss = buf[n] / worldSize;
      const mean = (f: (x: RankStep) => number) => ranks!.reduce((a, x) => a + f(x), 0) / worldSize;
      computeMs = mean((x) => x.computeMs);
      commMs = mean((x) => x.commMs);
      optimMs = mean((x) => x.optimMs);
      commExposedMs = Math.min(...ranks.map((x) => x.commMs));
      for (const x of ranks) if (x.rank !== rank) msb = Math.max(msb, modelStateBytes(x.memory));
      // Every rank feeds the same all-reduced figures in the same step order: the same next split.
      if (cfg.balanceBatch && r.batchSplit) balancer?.observe(r.batchSplit, ranks.map((x) => x.computeMs + x.optimMs));
    }
    peakModelState = Math.max(peakModelState, msb);
    finalLoss = loss;
    const tokensPerSec = tokensPerStep / (r.stepMs / 1000);
    const { valLoss, batchSplit } = r;
    const exposed = commExposedMs === undefined ? {} : { commExposedMs }; // multi-rank runs only
    if (metricsPath && lead) {
      const line = { step: r.step + 1, loss, lr: r.lr, tokensPerSec, computeMs, commMs, ...exposed, optimMs, stepMs: r.stepMs, gradNorm: r.gradNorm, memory: r.mem, ...(batchSplit ? { batchSplit } : {}), ...(valLoss !== undefined ? { valLoss } : {}) };
      appendFileSync(metricsPath, JSON.stringify(line) + '\n');
    }
    emit({ type: 'step', step: r.step + 1, loss, tokensPerSec, computeMs, commMs, ...exposed, optimMs, memory: r.mem, ...(ranks ? { ranks } : {}), ...(batchSplit ? { batchSplit } : {}) });
    if (valLoss !== undefined) emit({ type: 'val', step: r.step + 1, valLoss });
    if (lead && opts.onProgress) {
      const recent = stepTimes.slice(-20);
      const avgMs = recent.reduce((a, b) => a + b, 0) / recent.length;
      opts.onProgress({ step: r.step + 1, steps: cfg.steps, loss, lr: r.lr, tokensPerSec, commFraction: commMs / r.stepMs, ...(commExposedMs !== undefined ? { stragglerFraction: (commMs - commExposedMs) / r.stepMs } : {}), etaSec: ((endStep - r.step - 1) * avgMs) / 1000, valLoss });
    }
  };

  for (let step = startStep; step < endStep; step++) {
    const t0 = performance.now();
    // This rank's range of the step's windows: its even share, or its part of the split.
    const batchSplit = balancer ? [...balancer.split] : undefined;
    const count = batchSplit ? batchSplit[rank] : B;
    const offset = batchSplit ? batchSplit.slice(0, rank).reduce((a, n) => a + n, 0) : rank * B;
    // The average all-reduce divides by W: a rank holding count of the W·B windows weighs its mean
    // gradient (and loss) by count/B, so the average is the mean over all the step's windows.
    const share = count / B;
    // Micro-batch m of step s reads the sampler's batch s*accum+m: the same windows, in the same
    // order, as a run with accum times the batch size would read.
    let lossLocal = 0;
    for (let m = 0; m < accum; m++) {
      const idx = sampler.stepWindows(step * accum + m, offset, count);
      const { input, targets } = makeBatch(Array.from(idx, (i) => trainStarts[i]));
      const pass = () => engine.forwardBackward(input, targets, strategy, strategy, { gradScale: share / accum });
      lossLocal += (m < accum - 1 && strategy.noSync ? await strategy.noSync(pass) : await pass()) / accum;
      tf.dispose([input, targets]);
    }
    const t1 = performance.now();
    const lr = learningRate(schedule, step);
    // The previous step's record is finished while this step's gradients are on the wire (its
    // metrics all-reduce went out before them, so it is done): rank 0's file writes, events and
    // progress line then cost nothing on the path the other ranks wait for.
    const finishing = strategy.finishStep({ lr, step, maxGradNorm });
    finishing.catch(() => undefined); // awaited just below; a failure must not count as unhandled meanwhile
    if (pending) {
      const prev = pending;
      pending = undefined;
      await completeRecord(prev);
    }
    const stats = await finishing;

    const mem = fullMemoryReport(strategy.memory());
    mem.activations.device = Math.max(mem.activations.device, engine.lastActivationBytes);
    for (const c of Object.keys(peak) as Array<keyof typeof peak>) {
      peak[c].device = Math.max(peak[c].device, mem[c].device);
      peak[c].host = Math.max(peak[c].host, mem[c].host);
    }
    // Cross-rank view of the step: one sum all-reduce carries every rank's split and loss. It is
    // issued, not awaited: the record is completed during the next step (or after the loop), so
    // this small collective never holds a rank back waiting for a slower one.
    const record: PendingRecord = { step, lr, lossLocal, computeMs: t1 - t0, commMs: stats.commMs, optimMs: stats.optimMs, gradNorm: stats.gradNorm, mem, stepMs: 0, batchSplit };
    if (comm && worldSize > 1) {
      const packed = packRankStep({ computeMs: record.computeMs, commMs: stats.commMs, optimMs: stats.optimMs, memory: mem }, rank, worldSize);
      const buf = new Float32Array(packed.length + 1);
      buf.set(packed);
      buf[packed.length] = lossLocal * share;
      record.reduced = comm.allReduce(buf, { op: 'sum' }).then(() => buf);
      record.reduced.catch(() => undefined); // awaited in completeRecord
    }
    record.stepMs = performance.now() - t0;
    stepTimes.push(record.stepMs);

    const last = step === endStep - 1; // the run's last step, also when stopped early
    if (doEval && ((step + 1) % cfg.evalInterval === 0 || last)) {
      record.valLoss = await evaluate();
      finalValLoss = record.valLoss;
    }
    if (record.reduced) pending = record;
    else await completeRecord(record);
    const every = cfg.checkpointInterval ?? 0;
    if (every > 0 && (step + 1) % every === 0 && step + 1 < endStep) await checkpoint(step + 1);
  }
  if (pending) {
    const prev = pending;
    pending = undefined;
    await completeRecord(prev);
  }
  if (outDir && endStep > startStep) await checkpoint(endStep);

  const finalParams = await strategy.fullParams();
  const checksum = paramChecksum(finalParams);
  let sample: string | undefined;
  if (lead && opts.sample) {
    sample = await opts.sample(finalParams);
    emit({ type: 'sample', step: endStep, text: sample });
  }
  const summary: TrainSummary = {
    config: runConfig,
    steps: endStep,
    paramCount: nParams,
    finalLoss,
    finalValLoss,
    initialValLoss,
    paramChecksum: checksum,
    memory: { modelStateBytes: peakModelState, peak },
    strategy: strategy.name,
    worldSize,
    tokensPerSec: stepTimes.length ? tokensPerStep / (median(stepTimes) / 1000) : 0,
    wallSeconds: (performance.now() - started) / 1000,
    ...(sample !== undefined ? { sample } : {}),
    ...(resumedFrom !== undefined ? { resumedFrom } : {}),
  };
  if (outDir && lead) writeFileSync(join(outDir, 'summary.json'), JSON.stringify(summary, null, 2) + '\n');
  emit({ type: 'done', summary: summary as unknown as Record<string, unknown> });
  return summary;
}

interface FinishedRun {
  outDir: string;
  checkpointDir: string;
  /** The step the run had reached: the checkpoint's next step. */
  step: number;
  lead: boolean;
  initialValLoss: number | null;
  runConfig: Record<string, unknown>;
  strategy: string;
  worldSize: number;
  paramCount: number;
}

/**
 * A resume that finds the run already at its last step trains nothing and changes nothing: its
 * summary.json is the run's own. Only when the run ended between its last checkpoint and its summary
 * is the summary rebuilt, from the checkpoint's parameters and the metrics lines, and written.
 * Every rank takes this path alike (the step is in every rank's checkpoint), with no collective.
 */
function summaryOfFinishedRun(r: FinishedRun): Promise<TrainSummary> | TrainSummary {
  const path = join(r.outDir, 'summary.json');
  if (existsSync(path)) return { ...(JSON.parse(readFileSync(path, 'utf8')) as TrainSummary), alreadyFinished: true };
  return rebuildSummary(r, path);
}

async function rebuildSummary(r: FinishedRun, path: string): Promise<TrainSummary> {
  const metricsPath = join(r.outDir, 'metrics.jsonl');
  const lines = existsSync(metricsPath) ? readFileSync(metricsPath, 'utf8').trim().split('\n').filter(Boolean) : [];
  const metrics = lines.map((l) => JSON.parse(l) as { loss: number; valLoss?: number; stepMs: number; memory: MemoryReport });
  const peak = fullMemoryReport({});
  for (const m of metrics) {
    for (const c of Object.keys(peak) as Array<keyof typeof peak>) {
      peak[c].device = Math.max(peak[c].device, m.memory[c]?.device ?? 0);
      peak[c].host = Math.max(peak[c].host, m.memory[c]?.host ?? 0);
    }
  }
  const valLosses = metrics.filter((m) => m.valLoss !== undefined).map((m) => m.valLoss!);
  const stepTokens = (r.runConfig.batchSize as number) * (r.runConfig.blockSize as number) * r.worldSize;
  const accum = (r.runConfig.gradAccumSteps as number | undefined) ?? 1;
  const summary: TrainSummary = {
    config: r.runConfig,
    steps: r.step,
    paramCount: r.paramCount,
    finalLoss: metrics.at(-1)?.loss ?? NaN,
    finalValLoss: valLosses.at(-1) ?? null,
    initialValLoss: r.initialValLoss,
    paramChecksum: paramChecksum(await readModelParams(r.checkpointDir)),
    memory: { modelStateBytes: modelStateBytes(peak), peak },
    strategy: r.strategy,
    worldSize: r.worldSize,
    tokensPerSec: metrics.length ? (stepTokens * accum) / (median(metrics.map((m) => m.stepMs)) / 1000) : 0,
    wallSeconds: 0,
    resumedFrom: r.step,
  };
  if (r.lead) writeFileSync(path, JSON.stringify(summary, null, 2) + '\n');
  return { ...summary, alreadyFinished: true };
}
