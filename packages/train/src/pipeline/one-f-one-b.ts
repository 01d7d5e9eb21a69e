// 1F1B (PipeDream-Flush; Megatron-LM's non-interleaved schedule): stage s runs P - s - 1 warm-up
// forwards (at most M), then alternates one forward and one backward, then drains the remaining
// backwards. Same bubble as GPipe, but stage s keeps at most min(P - s, M) micro-batches'
// activations instead of M.
import { checkShape } from './gpipe.ts';
import type { PipeInstr, PipeSchedule } from './schedule.ts';

export function oneFOneBSchedule(stages: number, micros: number): PipeSchedule {
  checkShape(stages, micros);
  return Array.from({ length: stages }, (_, s): PipeInstr[] => {
    const warmup = Math.min(stages - s - 1, micros);
    const list: PipeInstr[] = [];
    for (let m = 0; m < warmup; m++) list.push({ op: 'F', micro: m });
    for (let i = 0; i < micros - warmup; i++) list.push({ op: 'F', micro: warmup + i }, { op: 'B', micro: i });
    for (let m = micros - warmup; m < micros; m++) list.push({ op: 'B', micro: m });
    return list;
  });
}
