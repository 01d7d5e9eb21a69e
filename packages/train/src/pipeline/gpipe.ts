// GPipe (Huang et al. 2019), fill-drain: every stage runs all M forwards, then all M backwards.
// Simple, and each stage keeps all M micro-batches' activations until the drain.
import { ScheduleError, type PipeInstr, type PipeSchedule } from './schedule.ts';

export function checkShape(stages: number, micros: number): void {
  if (!Number.isSafeInteger(stages) || stages < 1)
    throw new ScheduleError('shape', 0, -1, `stages = ${stages}, expected an integer >= 1`);
  if (!Number.isSafeInteger(micros) || micros < 1)
    throw new ScheduleError('shape', 0, -1, `micro-batches = ${micros}, expected an integer >= 1`);
}

export function gpipeSchedule(stages: number, micros: number): PipeSchedule {
  checkShape(stages, micros);
  const ms = Array.from({ length: micros }, (_, m) => m);
  return Array.from({ length: stages }, (): PipeInstr[] => [
    ...ms.map((micro) => ({ op: 'F' as const, micro })),
    ...ms.map((micro) => ({ op: 'B' as const, micro })),
  ]);
}
