// The schedules a run names (`--schedule`), built for P stages, M micro-batches and, for the
// interleaved one, V model chunks per stage.
import { gpipeSchedule } from './gpipe.ts';
import { interleavedSchedule } from './interleaved.ts';
import { oneFOneBSchedule } from './one-f-one-b.ts';
import type { PipeSchedule } from './schedule.ts';

export const PIPE_SCHEDULES = ['gpipe', '1f1b', 'interleaved'] as const;
export type PipeScheduleName = (typeof PIPE_SCHEDULES)[number];

/** The named schedule; `chunks` (V) only shapes the interleaved one. */
export function namedSchedule(name: PipeScheduleName, stages: number, micros: number, chunks = 1): PipeSchedule {
  if (name === 'gpipe') return gpipeSchedule(stages, micros);
  if (name === '1f1b') return oneFOneBSchedule(stages, micros);
  return interleavedSchedule(stages, micros, chunks);
}
