// One training step of one pipeline stage: the stage's program (its F and B instructions in the
// schedule's order) run against its neighbours with point-to-point messages. F of micro-batch m
// receives the previous stage's output (or takes the token ids), runs the stage and sends its
// output on; B receives the gradient for that output (or starts from the loss), runs backward
// and sends the input's gradient back. Sends are issued without waiting (isend), receives block,
// as in Megatron's non-interleaved schedule, so a stage waits only for what it needs next.
// Details: docs/internals.md#pipeline-executor
import * as tf from '@tensorflow/tfjs-core';
import type { DeviceLoss } from '../engine-pass.ts';
import { EngineError } from '../engine-pass.ts';
import { inputOf, outputOf } from './schedule.ts';
import type { PipelineStage } from './stage.ts';

/** What a stage asks of the process group: the torch.distributed point-to-point calls. */
export interface PipeComm {
  isend(buf: Float32Array, dst: number): Promise<unknown>;
  irecv(buf: Float32Array, src: number): Promise<unknown>;
  recv(buf: Float32Array, src: number): Promise<unknown>;
}

export interface Instruction {
  op: 'F' | 'B';
  micro: number;
  /** Which of the rank's model chunks runs (interleaved schedules); default 0. */
  chunk?: number;
}

export interface StageStepOptions {
  /** The stage, or with several model chunks per rank the stage of each chunk, in chunk order. */
  stage: PipelineStage | readonly PipelineStage[];
  program: readonly Instruction[];
  comm: PipeComm;
  /**
   * This stage's index in the pipeline (its rank in comm's numbering) and the pipeline's stage
   * count: with the program's chunks they give every instruction's peers (schedule.ts inputOf,
   * outputOf), so the executor sends and receives what the schedule says.
   */
  place: { stage: number; stages: number };
  /** Shape of the activation between stages, e.g. [B, T, C]. */
  activationShape: readonly number[];
  /** Micro-batch m's token ids (first stage) and targets (last stage), owned by the caller. */
  micro: (m: number) => { input?: tf.Tensor; targets?: tf.Tensor };
}

export interface StageStepStats {
  /** Last stage: each micro-batch's loss on the device, in micro-batch order. */
  losses: DeviceLoss[];
  /** The most micro-batches whose activations the stage held at once (over all its chunks). */
  peakLive: number;
  /** The most activation bytes it held at once (over all its chunks). */
  peakActivationBytes: number;
  /** Time spent waiting for receives, and the rest. */
  recvWaitMs: number;
  computeMs: number;
  /** Each instruction's compute, in program order: start and end in ms after the step began. */
  timeline: Array<{ start: number; end: number }>;
}

/** Runs one step's program on this stage; gradients go to the stage's sink. */
export async function runStageStep(o: StageStepOptions): Promise<StageStepStats> {
  const { comm } = o;
  const stages = Array.isArray(o.stage) ? (o.stage as readonly PipelineStage[]) : [o.stage as PipelineStage];
  const stageOf = (chunk = 0): PipelineStage => {
    const st = stages[chunk];
    if (!st) throw new EngineError(`instruction for chunk ${chunk}, but this stage holds ${stages.length} chunk(s)`);
    return st;
  };
  const size = o.activationShape.reduce((a, d) => a * d, 1);
  const sends: Array<Promise<unknown>> = [];
  const losses = new Map<number, DeviceLoss>();
  const stats = {
    peakLive: 0,
    peakActivationBytes: 0,
    recvWaitMs: 0,
    computeMs: 0,
    timeline: [] as StageStepStats['timeline'],
  };
  const notePeaks = (): void => {
    stats.peakLive = Math.max(
      stats.peakLive,
      stages.reduce((a, st) => a + st.live, 0),
    );
    stats.peakActivationBytes = Math.max(
      stats.peakActivationBytes,
      stages.reduce((a, st) => a + st.liveBytes, 0),
    );
  };
  const start = performance.now();
  // The receive of an instruction's input is posted one instruction ahead. A receive tells the
  // sender it is ready (the rendezvous protocol); posted only when needed, the data would wait for
  // a sender busy computing its next micro-batch, so every such hop would add to the bubble.
  const posted = new Map<number, { buf: Float32Array; done: Promise<unknown> }>();
  const { stage: at, stages: count } = o.place;
  const sourceOf = (i: number): number | undefined => {
    const instr = o.program[i];
    return instr && inputOf(instr, i, at, count, stages.length)?.peer;
  };
  const destinationOf = (i: number): number => outputOf(o.program[i]!, i, at, count, stages.length)!.peer;
  const post = (i: number): void => {
    const src = sourceOf(i);
    if (src === undefined || posted.has(i)) return;
    const buf = new Float32Array(size);
    const done = comm.irecv(buf, src);
    done.catch(() => undefined); // awaited by receive(); a failure must not count as unhandled meanwhile
    posted.set(i, { buf, done });
  };
  const receive = async (i: number): Promise<tf.Tensor> => {
    const { buf, done } = posted.get(i)!;
    posted.delete(i);
    const t0 = performance.now();
    await done;
    stats.recvWaitMs += performance.now() - t0;
    return tf.tensor(buf, [...o.activationShape]);
  };
  const send = async (t: tf.Tensor, dst: number): Promise<void> => {
    sends.push(comm.isend((await t.data()) as Float32Array, dst));
  };
  try {
    for (const [i, { op, micro, chunk }] of o.program.entries()) {
      const { input, targets } = o.micro(micro);
      const stage = stageOf(chunk);
      // In program order, so that on each link receives are posted in the order the peer sends.
      post(i);
      post(i + 1);
      if (op === 'F') {
        const x = sourceOf(i) === undefined ? requireTensor(input, 'token ids', micro).clone() : await receive(i);
        const t0 = performance.now() - start;
        const y = await stage.forward(micro, x, stage.isLast ? requireTensor(targets, 'targets', micro) : undefined);
        stats.timeline.push({ start: t0, end: performance.now() - start });
        notePeaks();
        if (y) await send(y, destinationOf(i));
      } else {
        const dy = sourceOf(i) === undefined ? undefined : await receive(i);
        try {
          const t0 = performance.now() - start;
          const r = await stage.backward(micro, dy);
          stats.timeline.push({ start: t0, end: performance.now() - start });
          if (r.loss) losses.set(micro, r.loss);
          if (r.inputGrad) {
            await send(r.inputGrad, destinationOf(i));
            r.inputGrad.dispose();
          }
        } finally {
          dy?.dispose();
        }
      }
    }
    await Promise.all(sends);
  } catch (err) {
    for (const st of stages) st.dispose();
    for (const l of losses.values()) l.value.dispose();
    throw err;
  }
  stats.computeMs = performance.now() - start - stats.recvWaitMs;
  const order = [...losses.keys()].sort((a, b) => a - b);
  return { ...stats, losses: order.map((m) => losses.get(m)!) };
}

function requireTensor(t: tf.Tensor | undefined, what: string, micro: number): tf.Tensor {
  if (!t) throw new EngineError(`micro-batch ${micro} has no ${what} for this stage`);
  return t;
}
