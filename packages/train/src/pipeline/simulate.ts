// Times a pipeline schedule: the timeline of every stage (from the same blocking execution the
// checker runs), the bubble fraction (idle share of stages x makespan) and the peak number of
// live activations per stage (forwards whose backward has not run yet), which is what sets a
// stage's activation memory. renderTimeline draws it as text, one lane per stage.
import { checkLists, executeSchedule, type ExecuteOptions, type TimedInstr } from './check.ts';
import { ScheduleError, chunksOf, instrLabel, type PipeSchedule } from './schedule.ts';

export interface PipeTimeline {
  stages: number;
  micros: number;
  /** Per stage, its instructions with start and end times, in list order. */
  lanes: TimedInstr[][];
  /** When the last stage finishes its last instruction. */
  makespan: number;
  /** Per stage, time spent computing. */
  busy: number[];
  /** 1 - sum(busy) / (stages x makespan). */
  bubble: number;
  /**
   * Per stage, the most micro-batches forwarded and not yet backwarded at any point (interleaved:
   * chunk forwards, each 1/V of the stage's blocks).
   */
  peakLive: number[];
}

/** Peak live activations per stage, from the list order alone. */
export function peakLiveActivations(schedule: PipeSchedule): number[] {
  return schedule.map((list) => {
    let live = 0;
    let peak = 0;
    for (const i of list) {
      live += i.op === 'F' ? 1 : -1;
      peak = Math.max(peak, live);
    }
    return peak;
  });
}

export function simulateSchedule(schedule: PipeSchedule, opts: ExecuteOptions): PipeTimeline {
  const stages = schedule.length;
  const chunks = chunksOf(schedule);
  const micros = (schedule[0] ?? []).filter((i) => i.op === 'F').length / chunks;
  for (const [what, t] of [
    ['fwdTime', opts.fwdTime],
    ['bwdTime', opts.bwdTime],
  ] as const) {
    const times = typeof t === 'number' ? [t] : t;
    if ((typeof t !== 'number' && t.length !== stages) || times.some((x) => !Number.isFinite(x) || x <= 0))
      throw new ScheduleError('bad', 0, -1, `${what} = ${String(t)}, expected a time > 0 or one per stage`);
  }
  checkLists(schedule, stages, micros, chunks);
  const lanes = executeSchedule(schedule, opts);
  const makespan = Math.max(...lanes.map((l) => l.at(-1)!.end));
  const busy = lanes.map((l) => l.reduce((a, t) => a + t.end - t.start, 0));
  const bubble = 1 - busy.reduce((a, b) => a + b, 0) / (stages * makespan);
  return { stages, micros, lanes, makespan, busy, bubble, peakLive: peakLiveActivations(schedule) };
}

/**
 * One text lane per stage: each instruction a box "[F3  ]" as wide as its time, idle time ".".
 * A whole number of columns per unit of time, so equal times draw equal boxes: enough for the
 * shortest box to hold its label, fewer when the chart would pass `width` columns (default 120);
 * a box too narrow for brackets shows its bare label ("F3"), one narrower still its letter.
 */
export function renderTimeline(t: PipeTimeline, width = 120): string {
  const all = t.lanes.flat();
  const shortest = Math.min(...all.map((i) => i.end - i.start));
  const label = Math.max(...all.map((i) => instrLabel(i).length)) + 2;
  const prefix = `stage ${t.stages - 1} `.length;
  const scale = Math.max(1, Math.min(Math.ceil(label / shortest), Math.floor((width - prefix) / t.makespan)));
  const col = (x: number): number => Math.round(x * scale);
  const lines = t.lanes.map((lane, s) => {
    const row = Array.from({ length: col(t.makespan) }, () => '.');
    for (const i of lane) {
      const a = col(i.start);
      const n = col(i.end) - a;
      const name = instrLabel(i);
      const text =
        n >= name.length + 2 ? `[${name.padEnd(n - 2)}]` : n >= name.length ? name.padEnd(n) : i.op.repeat(n);
      for (let k = 0; k < n; k++) row[a + k] = text[k]!;
    }
    return `${`stage ${s}`.padEnd(prefix)}${row.join('')}`;
  });
  return lines.join('\n');
}
