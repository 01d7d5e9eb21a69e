// A pipeline stage: a contiguous run of a block-list model's blocks, run forward and backward
// one micro-batch at a time in whatever order a schedule says, its activations and their
// gradients crossing to the neighbouring stages as tensors. It reuses the engine's pass (kept
// tapes, recompute, tied parameters emitted once per stage) on a *stage model*: the stage's
// blocks between two parameter-free blocks. The first one makes the stage's input a block
// input, so backward yields its gradient to send back; the last one ends the stage in a "loss"
// sum(y · dy) whose gradient with respect to y is the dy received from the next stage.
// Details: docs/internals.md#pipeline-stage
import * as tf from '@tensorflow/tfjs-core';
import { lowestUses } from '../engine.ts';
import type { GradSink, ParamSource } from '../engine-contract.ts';
import { EngineError, ForwardBackwardPass, type DeviceLoss } from '../engine-pass.ts';
import type { Block, BlockModel } from '../model.ts';

/** The parameter-free block that receives a stage's input: a copy, which the pass owns. */
const RECEIVE: Block = { name: 'pipeline-receive', params: [], forward: (_p, x) => x.clone() };
/** The parameter-free block whose "loss" takes the next stage's gradient: a copy, as a block output is its own. */
const SEND: Block = { name: 'pipeline-send', params: [], forward: (_p, x) => x.clone() };

/** Blocks [from, to) of `model`, as a model of their own that a strategy can hold. */
export function stageModel(model: BlockModel, from: number, to: number): BlockModel {
  const n = model.blocks.length;
  if (!Number.isInteger(from) || !Number.isInteger(to) || from < 0 || to > n || from >= to) {
    throw new EngineError(`stage blocks ${from}..${to - 1} are invalid, expected a non-empty range within 0..${n - 1}`);
  }
  const first = from === 0;
  const last = to === n;
  const blocks = [...(first ? [] : [RECEIVE]), ...model.blocks.slice(from, to), ...(last ? [] : [SEND])];
  const names = new Set(blocks.flatMap((b) => b.params.map((p) => p.name)));
  return {
    blocks,
    loss: last ? model.loss : (y, dy) => tf.sum(tf.mul(y, dy)) as tf.Scalar,
    initParams: (seed) => new Map([...model.initParams(seed)].filter(([name]) => names.has(name))),
  };
}

export interface StageOptions {
  /** Keep only block inputs and recompute each block in backward. */
  recompute?: boolean;
  /** The last stage's loss scale: 1/M when M micro-batches make one step. */
  gradScale?: number;
}

/** One stage of a pipeline, holding the passes of the micro-batches between their F and B. */
export class PipelineStage {
  readonly model: BlockModel;
  readonly isFirst: boolean;
  readonly isLast: boolean;
  /** The last stage's loss scale for the micro-batches to come (the trainer's share / M). */
  gradScale: number;
  private heldBytes = 0;
  private readonly emitAt: Map<string, number>;
  private readonly passes = new Map<number, { pass: ForwardBackwardPass; input: tf.Tensor; bytes: number }>();

  constructor(
    full: BlockModel,
    readonly from: number,
    readonly to: number,
    private readonly source: ParamSource,
    private readonly sink: GradSink,
    private readonly opts: StageOptions = {},
  ) {
    this.model = stageModel(full, from, to);
    this.isFirst = from === 0;
    this.isLast = to === full.blocks.length;
    this.emitAt = lowestUses(this.model);
    this.gradScale = opts.gradScale ?? 1;
  }

  /** Micro-batches whose forward has run and whose backward has not: their activations are live. */
  get live(): number {
    return this.passes.size;
  }

  /** The activation bytes those micro-batches hold (the engine's accounting of kept tapes and inputs). */
  get liveBytes(): number {
    return this.heldBytes;
  }

  /**
   * F of micro-batch `micro`: `input` is the token ids (first stage) or the previous stage's
   * output, and becomes the stage's (disposed after B). Returns the output to send on (owned by
   * the stage until B: read it, don't dispose it), or nothing on the last stage, which needs
   * `targets` (owned by the caller until B).
   */
  async forward(micro: number, input: tf.Tensor, targets?: tf.Tensor): Promise<tf.Tensor | undefined> {
    if (this.passes.has(micro)) throw new EngineError(`stage ${this.from}..${this.to - 1}: F of micro ${micro} twice`);
    if (this.isLast && !targets) throw new EngineError('the last stage needs the targets for its forward');
    const gradScale = this.isLast ? this.gradScale : 1;
    const passOpts = { gradScale, recompute: this.opts.recompute ?? false, emitAt: this.emitAt };
    const pass = new ForwardBackwardPass(this.model, input, targets ?? input, this.source, passOpts);
    const held = { pass, input, bytes: 0 };
    this.passes.set(micro, held);
    held.bytes = await pass.forward();
    this.heldBytes += held.bytes;
    return this.isLast ? undefined : pass.lastInput();
  }

  /**
   * B of micro-batch `micro`: `outputGrad` is the next stage's gradient for this stage's output
   * (none on the last stage). Gradients go to the sink; returns the gradient for the stage's
   * input (not on the first stage), owned by the caller, and on the last stage the loss.
   */
  async backward(micro: number, outputGrad?: tf.Tensor): Promise<{ inputGrad?: tf.Tensor; loss?: DeviceLoss }> {
    const held = this.passes.get(micro);
    if (!held) throw new EngineError(`stage ${this.from}..${this.to - 1}: B of micro ${micro} before its F`);
    const { pass, input, bytes } = held;
    try {
      if (!this.isLast) {
        if (!outputGrad) throw new EngineError('a stage before the last needs the output gradient for its backward');
        pass.setTargets(outputGrad);
      }
      // The receive block (index 0 after the first stage) has nothing to differentiate.
      const lowest = this.isFirst ? 0 : 1;
      for (let i = this.model.blocks.length - 1; i >= lowest; i--) await pass.backward(i, this.sink);
      return {
        ...(this.isFirst ? {} : { inputGrad: pass.takeInputGradient() }),
        ...(this.isLast ? { loss: pass.takeLoss() } : {}),
      };
    } finally {
      pass.dispose();
      this.passes.delete(micro);
      this.heldBytes -= bytes;
      input.dispose();
    }
  }

  /** Frees every pass still held (a step that failed half way). */
  dispose(): void {
    for (const { pass, input } of this.passes.values()) {
      pass.dispose();
      input.dispose();
    }
    this.passes.clear();
    this.heldBytes = 0;
  }
}
