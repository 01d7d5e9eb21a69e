// BlockwiseEngine: forward and backward of a block-list model one block at a time.
//
// Backward walks the blocks in reverse and, for each one, computes the block's parameter
// gradients and the gradient for the block below from the upstream gradient dy. Those gradients
// are handed to the GradSink the moment they exist, so a strategy can start communicating them
// (DDP buckets, ZeRO reduce-scatter) while the engine works on earlier blocks — the engine yields
// to the event loop between blocks so that communication actually progresses.
//
// What survives from forward to backward depends on the ParamSource, as DESIGN's data flow says:
// - by default, each block's forward runs on tfjs's gradient tape and the tape is kept (tape.ts),
//   so backward runs no forward again: what torch's autograd does without checkpointing;
// - where the source frees parameters after forward (ZeRO-3: `recomputeActivations`), only each
//   block's *input* is kept (activation checkpointing at block boundaries) and backward recomputes
//   the block's forward inside `tf.grads`, with the parameters gathered again. That costs one
//   more forward of every block but the last (about a fifth of a tiny GPT step on wasm).
//
// The last block is not run during forward: its forward is fused with the loss in one
// `tf.valueAndGrads`, which gives the loss value and the first dy without computing that block
// twice. The order in which the engine acquires block parameters is therefore
//   forward 0 .. L-2, then backward L-1 .. 0       (see `acquireSchedule`)
// which is what a ZeRO-3 strategy prefetches along. `forward` and `evalLoss` (validation,
// sampling) acquire forward 0 .. L-1.
//
// Tied parameters (a name used by several blocks, e.g. the GPT's wte in "embed" and "head")
// get their gradient contributions summed and are emitted once, complete, with the lowest
// block that uses them — the last block backward reaches.
//
// forwardBackward reads as those steps: forward, backward block by block, the loss. The state
// that lives from one walk to the other is one ForwardBackwardPass (engine-pass.ts).
import * as tf from '@tensorflow/tfjs-core';
import type { BlockModel, NamedTensors } from './model.ts';
import { acquireBlock, EngineError, ForwardBackwardPass, yieldToEventLoop } from './engine-pass.ts';

export type { GradSink, ParamSource, Phase } from './engine-contract.ts';
import type { GradSink, ParamSource, Phase } from './engine-contract.ts';

/** The (block, phase) sequence one `forwardBackward` acquires, in order. */
export function acquireSchedule(numBlocks: number): Array<{ block: number; phase: Phase }> {
  const order: Array<{ block: number; phase: Phase }> = [];
  for (let i = 0; i < numBlocks - 1; i++) order.push({ block: i, phase: 'forward' });
  for (let i = numBlocks - 1; i >= 0; i--) order.push({ block: i, phase: 'backward' });
  return order;
}

export { EngineError } from './engine-pass.ts';

export class BlockwiseEngine {
  readonly model: BlockModel;
  /** For each parameter name, the lowest block index that uses it (where its gradient is emitted). */
  private readonly emitAt = new Map<string, number>();
  /**
   * Bytes the last forwardBackward's forward kept for backward: block inputs when recomputing,
   * else those and everything the tapes saved (data shared with parameters not counted).
   */
  lastActivationBytes = 0;

  constructor(model: BlockModel) {
    if (model.blocks.length === 0) throw new EngineError('BlockwiseEngine: model has 0 blocks, expected at least 1');
    this.model = model;
    model.blocks.forEach((block, i) => {
      const names = new Set<string>();
      for (const p of block.params) {
        if (names.has(p.name)) {
          throw new EngineError(
            `block "${block.name}" lists parameter "${p.name}" twice, expected each name once per block`,
          );
        }
        names.add(p.name);
        if (!this.emitAt.has(p.name)) this.emitAt.set(p.name, i);
      }
    });
  }

  get numBlocks(): number {
    return this.model.blocks.length;
  }

  /**
   * One forward + backward on a micro-batch. Returns the mean loss. `input` and `targets` stay
   * owned by the caller. Every gradient goes to `sink` (the engine keeps none). `gradScale`
   * multiplies every gradient (the backward starts from gradScale * loss), e.g. 1/k when k
   * micro-batches are accumulated into one step; the returned loss is unscaled. `recompute`
   * overrides the source's `recomputeActivations` (activation checkpointing on or off).
   */
  async forwardBackward(
    input: tf.Tensor,
    targets: tf.Tensor,
    source: ParamSource,
    sink: GradSink,
    opts: { gradScale?: number; recompute?: boolean } = {},
  ): Promise<number> {
    const recompute = opts.recompute ?? source.recomputeActivations ?? false;
    const passOpts = { gradScale: opts.gradScale ?? 1, recompute, emitAt: this.emitAt };
    const pass = new ForwardBackwardPass(this.model, input, targets, source, passOpts);
    try {
      this.lastActivationBytes = await pass.forward();
      for (let i = this.model.blocks.length - 1; i >= 0; i--) await pass.backward(i, sink);
      return await pass.loss();
    } finally {
      pass.dispose();
    }
  }

  /** Forward of every block: the last block's output (e.g. logits), owned by the caller. */
  async forward(input: tf.Tensor, source: ParamSource): Promise<tf.Tensor> {
    const { blocks } = this.model;
    let x = input;
    for (let i = 0; i < blocks.length; i++) {
      const params = await acquireBlock(this.model, source, i, 'forward');
      const y = tf.tidy(() => blocks[i].forward(params, x));
      await source.release(i, 'forward');
      if (x !== input) x.dispose();
      x = y;
      await yieldToEventLoop();
    }
    return x;
  }

  /** Loss only (validation): forward of every block, then the model's loss. */
  async evalLoss(input: tf.Tensor, targets: tf.Tensor, source: ParamSource): Promise<number> {
    const out = await this.forward(input, source);
    const loss = tf.tidy(() => this.model.loss(out, targets));
    out.dispose();
    const v = (await loss.data())[0];
    loss.dispose();
    return v;
  }
}
