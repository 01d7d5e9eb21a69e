// TrainEvent: the live feed a training run emits through the trainer's `onEvent` hook
// (.notes/INTERFACES.md, "TrainEvent"). The dashboard draws from it and `--out DIR` keeps a
// copy as events.jsonl (one event per line, appended as they happen) so a finished or
// still-running run can be shown later by `zeroring dashboard DIR`.
//
// Plain JSON data only (numbers, strings, records): events cross a WebSocket and a file.
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Where bytes live: on the compute device (GPU/wasm/cpu tensors) or in host memory (offload). */
export interface PlaceBytes {
  device: number;
  host: number;
}

export const MEMORY_CATEGORIES = ['params', 'grads', 'optimizer', 'gathered', 'activations'] as const;
export type MemoryCategory = (typeof MEMORY_CATEGORIES)[number];

/** Bytes per category and place on one rank. Categories a strategy does not use may be absent. */
export type MemoryReport = Partial<Record<MemoryCategory, PlaceBytes>>;

/** One rank's share of a step: where its time went and what it holds. */
export interface RankStep {
  rank: number;
  computeMs: number;
  /** Time spent waiting on communication that did not overlap with compute. */
  commMs: number;
  optimMs: number;
  memory: MemoryReport;
}

export interface ConfigEvent {
  type: 'config';
  /** The run's configuration as given to the trainer (model, steps, batch size, lr, ...). */
  config: Record<string, unknown>;
  paramCount: number;
  strategy: string;
  backend: string;
  worldSize: number;
}

/** One stage's figures of a step. */
export interface StageFigures {
  computeMs: number;
  /** Waiting for the neighbours' activations and gradients. */
  waitMs: number;
  /** waitMs over the stage's whole forward-backward time. */
  bubble: number;
  /** The most activation bytes the stage held at once, over all its live micro-batches. */
  peakActivationBytes: number;
  /** The most micro-batches whose activations it held at once. */
  peakLive: number;
}

/** A step of the pipeline, as metrics.jsonl and the step event record it (pipeline 0's stages). */
export interface PipelineStepFigures {
  /** gpipe, 1f1b or interleaved. */
  schedule: string;
  microBatches: number;
  /** Model chunks per stage (interleaved), when more than one. */
  chunks?: number;
  /** The mean of the stages' bubbles. */
  bubble: number;
  stages: StageFigures[];
  /**
   * Per stage, its schedule's instructions: [F or B, micro-batch, start ms, end ms] from the
   * step's start, and the model chunk as a fifth element with the interleaved schedule.
   */
  timeline: Array<Array<[string, number, number, number] | [string, number, number, number, number]>>;
}

export interface StepEvent {
  type: 'step';
  step: number;
  loss: number;
  /** Tokens per second of all ranks together. */
  tokensPerSec: number;
  /** computeMs, commMs, optimMs: the mean over ranks (the per-rank values are in `ranks`). */
  computeMs: number;
  commMs: number;
  /**
   * The least any rank waited on communication this step (multi-process runs): the rank that
   * finished its backward last waited only for the gradient traffic no rank could hide behind
   * compute. commMs minus this is time spent waiting for slower ranks (stragglers), which more
   * bandwidth would not shorten but `--balance` or equal machines would.
   */
  commExposedMs?: number;
  optimMs: number;
  /** Rank 0's memory (or the only rank's). */
  memory: MemoryReport;
  /** Per-rank split, when the trainer gathers it (multi-process runs). */
  ranks?: RankStep[];
  /** Windows each rank read, when they were split by config.batchSplit or balanceBatch. */
  batchSplit?: number[];
  /** Pipeline runs: the first pipeline's stages this step (compute, wait, bubble, timeline). */
  pipeline?: PipelineStepFigures;
}

export interface ValEvent {
  type: 'val';
  step: number;
  valLoss: number;
}

export interface SampleEvent {
  type: 'sample';
  step: number;
  text: string;
}

export interface DoneEvent {
  type: 'done';
  /** The object written to summary.json (DESIGN.md, "Contracts"). */
  summary: Record<string, unknown>;
}

export type TrainEvent = ConfigEvent | StepEvent | ValEvent | SampleEvent | DoneEvent;

export type TrainEventType = TrainEvent['type'];

/** The trainer's optional hook. It must not throw into the training loop; errors are the hook's own. */
export type OnTrainEvent = (event: TrainEvent) => void;

/** Name of the file, inside a run's --out DIR, that holds one JSON TrainEvent per line. */
export const EVENTS_FILE = 'events.jsonl';

const TYPES: ReadonlySet<string> = new Set(['config', 'step', 'val', 'sample', 'done']);

/** Narrowing check for data read back from a file or socket. */
export function isTrainEvent(value: unknown): value is TrainEvent {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { type?: unknown }).type === 'string' &&
    TYPES.has((value as { type: string }).type)
  );
}

/**
 * An onEvent hook that appends each event as one line to DIR/events.jsonl (created with DIR).
 * Synchronous appends: events are few (one per step) and a crash must not lose the tail that a
 * live `zeroring dashboard DIR` is following. `truncate` starts a fresh file (a new run, not --resume).
 */
export function eventsFileWriter(dir: string, opts: { truncate?: boolean } = {}): OnTrainEvent {
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, EVENTS_FILE);
  if (opts.truncate ?? true) fs.writeFileSync(file, '');
  return (event) => fs.appendFileSync(file, JSON.stringify(event) + '\n');
}

/** Sum of all categories and places of a memory report, in bytes. */
export function totalBytes(memory: MemoryReport): number {
  let sum = 0;
  for (const place of Object.values(memory)) if (place) sum += place.device + place.host;
  return sum;
}

/** Numbers per rank in a packed per-rank split: computeMs, commMs, optimMs, then device/host per category. */
export const RANK_STEP_FIELDS = 3 + 2 * MEMORY_CATEGORIES.length;

/**
 * This rank's split in its own slot of a zeroed worldSize * RANK_STEP_FIELDS buffer, so that one
 * sum all-reduce (which every ProcessGroup has) gathers all ranks' splits for the `ranks` field
 * of a step event. Float32: byte counts above 16 MiB round to ~1e-7 relative, fine for a display.
 */
export function packRankStep(split: Omit<RankStep, 'rank'>, rank: number, worldSize: number): Float32Array {
  if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize) {
    throw new RangeError(`rank ${rank} is invalid: expected an integer 0..${worldSize - 1}`);
  }
  const buf = new Float32Array(worldSize * RANK_STEP_FIELDS);
  let i = rank * RANK_STEP_FIELDS;
  buf[i++] = split.computeMs;
  buf[i++] = split.commMs;
  buf[i++] = split.optimMs;
  for (const c of MEMORY_CATEGORIES) {
    buf[i++] = split.memory[c]?.device ?? 0;
    buf[i++] = split.memory[c]?.host ?? 0;
  }
  return buf;
}

/** The inverse of packRankStep after the all-reduce: one RankStep per rank, in rank order. */
export function unpackRankSteps(buf: Float32Array, worldSize: number): RankStep[] {
  if (buf.length !== worldSize * RANK_STEP_FIELDS) {
    throw new RangeError(`packed rank split has ${buf.length} numbers: expected ${worldSize} * ${RANK_STEP_FIELDS}`);
  }
  const out: RankStep[] = [];
  for (let rank = 0; rank < worldSize; rank++) {
    let i = rank * RANK_STEP_FIELDS;
    const step: RankStep = { rank, computeMs: buf[i++], commMs: buf[i++], optimMs: buf[i++], memory: {} };
    for (const c of MEMORY_CATEGORIES) step.memory[c] = { device: buf[i++], host: buf[i++] };
    out.push(step);
  }
  return out;
}
