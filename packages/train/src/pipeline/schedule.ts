// Pipeline schedules as data: per stage, the list of forward and backward passes it runs, in
// order. The sends and receives are not stored; stageProgram derives them from the op list, so a
// schedule cannot say one thing about compute and another about communication. Pure: no
// communication, no tensors; the executor walks stageProgram and the checker simulates it.
// Design notes: docs/internals.md#pipeline-schedules

/** One pass of one micro-batch through a stage's blocks: forward, or backward. */
export interface PipeInstr {
  readonly op: 'F' | 'B';
  readonly micro: number;
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
  | { readonly kind: 'compute'; readonly instr: number; readonly op: 'F' | 'B'; readonly micro: number };

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

export const instrLabel = (i: PipeInstr): string => `${i.op}${i.micro}`;

/** The receive an instruction waits for before it computes, if any. */
export function inputOf(i: PipeInstr, index: number, stage: number, stages: number): PipeCommOp | undefined {
  if (i.op === 'F' && stage > 0) return { dir: 'recv', peer: stage - 1, tensor: 'act', micro: i.micro, instr: index };
  if (i.op === 'B' && stage < stages - 1)
    return { dir: 'recv', peer: stage + 1, tensor: 'grad', micro: i.micro, instr: index };
  return undefined;
}

/** The send an instruction makes after it computes, if any (the last stage's loss is local). */
export function outputOf(i: PipeInstr, index: number, stage: number, stages: number): PipeCommOp | undefined {
  if (i.op === 'F' && stage < stages - 1)
    return { dir: 'send', peer: stage + 1, tensor: 'act', micro: i.micro, instr: index };
  if (i.op === 'B' && stage > 0) return { dir: 'send', peer: stage - 1, tensor: 'grad', micro: i.micro, instr: index };
  return undefined;
}

/**
 * The steps stage `stage` executes for its list (see PipeStep); empty comm batches are left out.
 * fuse false posts every send and receive as a batch of its own: with rendezvous sends, 1F1B then
 * deadlocks (both neighbours send first), which the tests show; it is there to show why fusing.
 */
export function stageProgram(schedule: PipeSchedule, stage: number, fuse = true): PipeStep[] {
  const list = schedule[stage];
  if (!list) throw new ScheduleError('shape', stage, -1, `stage ${stage} does not exist (${schedule.length} stages)`);
  const stages = schedule.length;
  const steps: PipeStep[] = [];
  let pending: PipeCommOp[] = [];
  for (const [index, instr] of list.entries()) {
    const input = inputOf(instr, index, stage, stages);
    if (!fuse && pending.length > 0) steps.push({ kind: 'comm', ops: pending.splice(0) });
    if (input) pending.push(input);
    if (pending.length > 0) steps.push({ kind: 'comm', ops: pending });
    steps.push({ kind: 'compute', instr: index, op: instr.op, micro: instr.micro });
    const output = outputOf(instr, index, stage, stages);
    pending = output ? [output] : [];
  }
  if (pending.length > 0) steps.push({ kind: 'comm', ops: pending });
  return steps;
}
