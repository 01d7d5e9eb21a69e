// Turns a run's --out DIR into TrainEvents, once or while it grows.
//
// events.jsonl (written by the trainer's events hook) is the full feed and wins when present.
// Older or hand-made runs have only metrics.jsonl + summary.json (DESIGN.md, "Contracts"); from
// those we rebuild what we can: step events, and config + done from the summary.
// Tailing polls file sizes instead of fs.watch: watch events are unreliable across platforms
// and network filesystems, and a poll every few hundred ms is cheap for a handful of files.
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  EVENTS_FILE,
  isTrainEvent,
  type TrainEvent,
  type StepEvent,
  type MemoryReport,
  type PipelineStepFigures,
} from '@zeroring/train';

export const METRICS_FILE = 'metrics.jsonl';
export const SUMMARY_FILE = 'summary.json';

export class RunDirError extends Error {
  override name = 'RunDirError';
}

/** Reads appended lines of one file from a remembered offset; a partial last line waits for the next read. */
class LineFollower {
  private offset = 0;
  private rest = '';
  /** Set when the file shrank since the last read (a new run started in the same directory). */
  truncated = false;
  constructor(readonly file: string) {}

  readNew(): string[] {
    let size: number;
    try {
      size = fs.statSync(this.file).size;
    } catch {
      return [];
    }
    if (size < this.offset) {
      // Truncated: a new run started in the same directory. Start over.
      this.offset = 0;
      this.rest = '';
      this.truncated = true;
    }
    if (size === this.offset) return [];
    const fd = fs.openSync(this.file, 'r');
    try {
      const buf = Buffer.alloc(size - this.offset);
      const n = fs.readSync(fd, buf, 0, buf.length, this.offset);
      this.offset += n;
      const text = this.rest + buf.subarray(0, n).toString('utf8');
      const lines = text.split('\n');
      this.rest = lines.pop() ?? '';
      return lines.filter((l) => l.trim() !== '');
    } finally {
      fs.closeSync(fd);
    }
  }
}

function parseLine(line: string): unknown {
  try {
    return JSON.parse(line);
  } catch {
    return undefined; // a line being written right now, or garbage: skip, never crash the viewer
  }
}

function num(v: unknown, fallback = 0): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : fallback;
}

/** A metrics.jsonl row (DESIGN.md: step, loss, tokensPerSec, computeMs, commMs, memory, pipeline?) as a step event. */
export function metricsRowToStep(row: Record<string, unknown>): StepEvent | undefined {
  if (typeof row.step !== 'number' || typeof row.loss !== 'number') return undefined;
  const event: StepEvent = {
    type: 'step',
    step: row.step,
    loss: row.loss,
    tokensPerSec: num(row.tokensPerSec),
    computeMs: num(row.computeMs),
    commMs: num(row.commMs),
    optimMs: num(row.optimMs),
    memory: (typeof row.memory === 'object' && row.memory !== null ? row.memory : {}) as MemoryReport,
  };
  if (typeof row.commExposedMs === 'number' && Number.isFinite(row.commExposedMs))
    event.commExposedMs = row.commExposedMs;
  if (Array.isArray(row.ranks)) event.ranks = row.ranks as StepEvent['ranks'];
  // Pipeline runs write the step's stage figures and timeline into each row, as in the step event.
  const pipeline = row.pipeline as Partial<PipelineStepFigures> | null | undefined;
  if (typeof pipeline === 'object' && pipeline !== null && Array.isArray(pipeline.timeline))
    event.pipeline = pipeline as PipelineStepFigures;
  return event;
}

/** config + done events rebuilt from summary.json (used only when there is no events.jsonl). */
export function summaryToEvents(summary: Record<string, unknown>): TrainEvent[] {
  const config = (typeof summary.config === 'object' && summary.config !== null ? summary.config : {}) as Record<
    string,
    unknown
  >;
  const str = (v: unknown) => (typeof v === 'string' ? v : 'unknown');
  return [
    {
      type: 'config',
      config,
      paramCount: num(summary.paramCount),
      strategy: str(config.strategy ?? summary.strategy),
      backend: str(config.backend ?? summary.backend),
      worldSize: num(config.worldSize ?? config.nproc ?? summary.worldSize, 1),
    },
    { type: 'done', summary },
  ];
}

export interface RunFollower {
  /**
   * Reads whatever is new in the directory, as events in file order. `reset` says the run was
   * started over in the same directory: the events are then the new run's, from its beginning,
   * and whatever was read before belongs to the old run.
   */
  poll(): { events: TrainEvent[]; reset: boolean };
}

/**
 * Follows a run directory. Each poll returns only new events. Source choice: events.jsonl if it
 * exists (checked at every poll until a source is fixed), else metrics.jsonl + summary.json.
 */
export function followRun(dir: string): RunFollower {
  const eventsFile = new LineFollower(path.join(dir, EVENTS_FILE));
  const metricsFile = new LineFollower(path.join(dir, METRICS_FILE));
  const summaryPath = path.join(dir, SUMMARY_FILE);
  let source: 'events' | 'metrics' | undefined;
  let summarySeen = false;

  return {
    poll() {
      if (source === undefined) {
        if (fs.existsSync(eventsFile.file)) source = 'events';
        else if (fs.existsSync(metricsFile.file) || fs.existsSync(summaryPath)) source = 'metrics';
        else return { events: [], reset: false };
      }
      const out: TrainEvent[] = [];
      if (source === 'events') {
        const lines = eventsFile.readNew();
        for (const line of lines) {
          const ev = parseLine(line);
          if (isTrainEvent(ev)) out.push(ev);
        }
        const reset = eventsFile.truncated;
        eventsFile.truncated = false;
        return { events: out, reset };
      }
      const lines = metricsFile.readNew();
      const reset = metricsFile.truncated;
      metricsFile.truncated = false;
      if (reset) summarySeen = false;
      for (const line of lines) {
        const row = parseLine(line);
        if (typeof row === 'object' && row !== null) {
          const ev = metricsRowToStep(row as Record<string, unknown>);
          if (ev) out.push(ev);
        }
      }
      // summary.json is written once at the end; it carries the config, so it goes first on the page
      // side (the page accepts config at any point) and done last.
      if (!summarySeen && fs.existsSync(summaryPath)) {
        const summary = parseLine(fs.readFileSync(summaryPath, 'utf8'));
        if (typeof summary === 'object' && summary !== null) {
          summarySeen = true;
          out.push(...summaryToEvents(summary as Record<string, unknown>));
        }
      }
      return { events: out, reset };
    },
  };
}

/** All events of a run directory as it is now. Throws RunDirError when DIR holds no run. */
export function readRunEvents(dir: string): TrainEvent[] {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
    throw new RunDirError(
      `run directory ${JSON.stringify(dir)} does not exist (expected the --out DIR of a zeroring train run)`,
    );
  }
  return followRun(dir).poll().events;
}
