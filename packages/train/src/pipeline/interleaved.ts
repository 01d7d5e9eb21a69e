// Interleaved 1F1B (Megatron-LM's interleaved schedule, Narayanan et al. 2021): each stage holds V
// model chunks (chunk c of stage s is model stage c·P + s), so a micro-batch goes round the stages
// V times and the fill/drain costs 1/V as much: bubble (P − 1)/(V·M + P − 1) at equal times. Order
// as Megatron's get_model_chunk_id: micro-batches in groups of P, each group through chunk 0, then
// chunk 1...; backwards through the chunks in reverse. Warm-up (P − s − 1)·2 + (V − 1)·P forwards.
import { checkShape } from './gpipe.ts';
import { ScheduleError, type PipeInstr, type PipeSchedule } from './schedule.ts';

export function interleavedSchedule(stages: number, micros: number, chunks: number): PipeSchedule {
  checkShape(stages, micros);
  if (!Number.isSafeInteger(chunks) || chunks < 1)
    throw new ScheduleError('shape', 0, -1, `chunks = ${chunks}, expected an integer >= 1`);
  if (chunks > 1 && stages < 2)
    throw new ScheduleError('shape', 0, -1, `stages = ${stages} with ${chunks} chunks, expected >= 2 to interleave`);
  if (micros % stages !== 0)
    throw new ScheduleError('shape', 0, -1, `micro-batches = ${micros}, expected a multiple of stages (${stages})`);
  const total = micros * chunks;
  // k-th forward (or backward) of a stage: which micro-batch and chunk.
  const nth = (k: number, op: 'F' | 'B'): PipeInstr => {
    const inGroup = k % (stages * chunks);
    const c = Math.floor(inGroup / stages);
    const micro = Math.floor(k / (stages * chunks)) * stages + (k % stages);
    return { op, micro, chunk: op === 'F' ? c : chunks - 1 - c };
  };
  return Array.from({ length: stages }, (_, s): PipeInstr[] => {
    const warmup = micros === stages ? total : Math.min((stages - s - 1) * 2 + (chunks - 1) * stages, total);
    const list: PipeInstr[] = [];
    for (let k = 0; k < warmup; k++) list.push(nth(k, 'F'));
    for (let i = 0; i < total - warmup; i++) list.push({ ...nth(warmup + i, 'F'), withNext: true }, nth(i, 'B'));
    for (let k = total - warmup; k < total; k++) list.push(nth(k, 'B'));
    return list;
  });
}
