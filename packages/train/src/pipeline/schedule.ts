// Pipeline schedules as data: per stage, the list of forward and backward passes it runs, in
// order. The sends and receives are not stored; stageProgram derives them from the op list, so a
// schedule cannot say one thing about compute and another about communication. Pure: no
// communication, no tensors; the executor walks stageProgram and the checker simulates it.
// Design notes: docs/internals.md#pipeline-schedules

/** One pass of one micro-batch through a stage's blocks: forward, or backward. */
export interface PipeInstr {
  readonly op: 'F' | 'B';
  readonly micro: number;
  /**
   * Interleaved schedules only: which of the stage's V model chunks (virtual stages) runs. Chunk c
   * of stage s is model stage c·P + s, so a micro-batch goes round the stages V times.
   */
  readonly chunk?: number;
  /**
   * Run back to back with the next instruction (a B), with one comm batch
   * before the two (both inputs) and one after (both outputs, and the next inputs): Megatron's
   * send_forward_backward_recv_forward_backward in the interleaved steady state.
   */
  readonly withNext?: boolean;
}

/** Per stage (index = stage, 0 runs the first blocks), the instructions in the order it runs them. */
export type PipeSchedule = readonly (readonly PipeInstr[])[];

/** Activations go forward (stage s to s + 1), their gradients backward (s + 1 to s). */
export type PipeTensor = 'act' | 'grad';

export interface PipeCommOp {
  readonly dir: 'send' | 'recv';
  readonly peer: number;
  readonly tensor: PipeTensor;
  readonly micro: number;
  /** Model stages e and e + 1 exchange it (activation from e, gradient from e + 1). */
  readonly edge: number;
  /** The instruction (index in the stage's list) whose input or output this is. */
  readonly instr: number;
}

/**
 * What a stage executes: comm steps (a batch of sends and receives posted together, done when all
 * are matched, as torch's batch_isend_irecv) between compute steps. Instruction i's output send and
 * instruction i + 1's input receive share one batch, which is what lets 1F1B's steady state pair
 * "send activation, receive gradient" with the next stage (Megatron's send_forward_recv_backward)
 * instead of both stages blocking on a send.
 */
export type PipeStep =
  | { readonly kind: 'comm'; readonly ops: readonly PipeCommOp[] }
  | {
      readonly kind: 'compute';
      readonly instr: number;
      readonly op: 'F' | 'B';
      readonly micro: number;
      readonly chunk?: number;
    };

export type ScheduleFault = 'shape' | 'bad' | 'duplicate' | 'missing' | 'order' | 'mismatch' | 'deadlock';

/** A schedule that cannot run: names the stage and the instruction (index in its list) at fault. */
export class ScheduleError extends Error {
  override name = 'ScheduleError';
  constructor(
    readonly fault: ScheduleFault,
    readonly stage: number,
    /** Index in the stage's list; -1 when the fault is something absent. */
    readonly index: number,
    message: string,
  ) {
    super(`pipeline schedule: ${message}`);
  }
}

/** "F3", or with a chunk "F3a" (chunk 0), "F3b" (chunk 1)... */
export const instrLabel = (i: PipeInstr): string =>
  `${i.op}${i.micro}${i.chunk === undefined ? '' : String.fromCharCode(97 + i.chunk)}`;

/** Model chunks per stage: 1 unless the instructions name chunks. */
export function chunksOf(schedule: PipeSchedule): number {
  return 1 + Math.max(0, ...schedule.flatMap((l) => l.map((i) => i.chunk ?? 0)));
}

/** The receive an instruction waits for before it computes, if any. */
export function inputOf(
  i: PipeInstr,
  index: number,
  stage: number,
  stages: number,
  chunks = 1,
): PipeCommOp | undefined {
  const g = (i.chunk ?? 0) * stages + stage; // model stage
  const { micro } = i;
  if (i.op === 'F' && g > 0)
    return { dir: 'recv', peer: (stage + stages - 1) % stages, tensor: 'act', micro, edge: g - 1, instr: index };
  if (i.op === 'B' && g < stages * chunks - 1)
    return { dir: 'recv', peer: (stage + 1) % stages, tensor: 'grad', micro, edge: g, instr: index };
  return undefined;
}

/** The send an instruction makes after it computes, if any (the last model stage's loss is local). */
export function outputOf(
  i: PipeInstr,
  index: number,
  stage: number,
  stages: number,
  chunks = 1,
): PipeCommOp | undefined {
  const g = (i.chunk ?? 0) * stages + stage;
  const { micro } = i;
  if (i.op === 'F' && g < stages * chunks - 1)
    return { dir: 'send', peer: (stage + 1) % stages, tensor: 'act', micro, edge: g, instr: index };
  if (i.op === 'B' && g > 0)
    return { dir: 'send', peer: (stage + stages - 1) % stages, tensor: 'grad', micro, edge: g - 1, instr: index };
  return undefined;
}

/**
 * How a stage groups its communication (PipeStep). 'next' (what executors do): instruction i's
 * output send and instruction i + 1's input receive are one batch, which 1F1B needs with rendezvous
 * sends, and instructions marked withNext run as a pair between two batches. 'none': every send and
 * receive alone and no pairs; with rendezvous sends 1F1B then deadlocks (the tests show why fusing).
 */
export type PipeFuse = 'none' | 'next';

/** The steps stage `stage` executes for its list (see PipeStep); empty comm batches are left out. */
export function stageProgram(schedule: PipeSchedule, stage: number, fuse: PipeFuse = 'next'): PipeStep[] {
  const list = schedule[stage];
  if (!list) throw new ScheduleError('shape', stage, -1, `stage ${stage} does not exist (${schedule.length} stages)`);
  const stages = schedule.length;
  const chunks = chunksOf(schedule);
  const groups: number[][] = [];
  for (let i = 0; i < list.length; i++) {
    const pair = fuse === 'next' && list[i]!.withNext === true && i + 1 < list.length;
    groups.push(pair ? [i, ++i] : [i]);
  }
  const steps: PipeStep[] = [];
  let pending: PipeCommOp[] = [];
  for (const group of groups) {
    if (fuse === 'none' && pending.length > 0) steps.push({ kind: 'comm', ops: pending.splice(0) });
    for (const index of group) {
      const input = inputOf(list[index]!, index, stage, stages, chunks);
      if (input) pending.push(input);
      if (fuse === 'none' && pending.length > 0) steps.push({ kind: 'comm', ops: pending.splice(0) });
    }
    if (pending.length > 0) steps.push({ kind: 'comm', ops: pending });
    pending = [];
    for (const index of group) {
      const { op, micro, chunk } = list[index]!;
      steps.push({ kind: 'compute', instr: index, op, micro, chunk });
    }
    for (const index of group) {
      const output = outputOf(list[index]!, index, stage, stages, chunks);
      if (output) pending.push(output);
      if (fuse === 'none' && pending.length > 0) steps.push({ kind: 'comm', ops: pending.splice(0) });
    }
  }
  if (pending.length > 0) steps.push({ kind: 'comm', ops: pending });
  return steps;
}
