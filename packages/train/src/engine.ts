// BlockwiseEngine: forward and backward of a block-list model one block at a time, handing each
// block's gradients to the strategy the moment they exist (and yielding between blocks) so that
// communication overlaps the rest of backward. Forward keeps each block's tape, or only its input
// where the strategy frees parameters (ZeRO-3), and then backward recomputes the block. The last
// block's forward is fused with the loss; tied parameters are emitted once, complete.
// Details: docs/internals.md#engine
import * as tf from '@tensorflow/tfjs-core';
import type { BlockModel, NamedTensors } from './model.ts';
import {
  acquireBlock,
  EngineError,
  ForwardBackwardPass,
  lossValue,
  yieldToEventLoop,
  type DeviceLoss,
} from './engine-pass.ts';

export type { GradSink, ParamSource, Phase } from './engine-contract.ts';
import type { GradSink, ParamSource, Phase } from './engine-contract.ts';

/** The (block, phase) sequence one `forwardBackward` acquires, in order. */
export function acquireSchedule(numBlocks: number): Array<{ block: number; phase: Phase }> {
  const order: Array<{ block: number; phase: Phase }> = [];
  for (let i = 0; i < numBlocks - 1; i++) order.push({ block: i, phase: 'forward' });
  for (let i = numBlocks - 1; i >= 0; i--) order.push({ block: i, phase: 'backward' });
  return order;
}

export { EngineError, lossValue, type DeviceLoss } from './engine-pass.ts';

/**
 * For each parameter name, the lowest block index that uses it: where its complete gradient is
 * emitted (a tied parameter's contributions from higher blocks are added there).
 */
export function lowestUses(model: BlockModel): Map<string, number> {
  const emitAt = new Map<string, number>();
  model.blocks.forEach((block, i) => {
    const names = new Set<string>();
    for (const p of block.params) {
      if (names.has(p.name)) {
        throw new EngineError(
          `block "${block.name}" lists parameter "${p.name}" twice, expected each name once per block`,
        );
      }
      names.add(p.name);
      if (!emitAt.has(p.name)) emitAt.set(p.name, i);
    }
  });
  return emitAt;
}

export class BlockwiseEngine {
  readonly model: BlockModel;
  /** For each parameter name, the lowest block index that uses it (where its gradient is emitted). */
  private readonly emitAt: Map<string, number>;
  /**
   * Bytes the last forwardBackward's forward kept for backward: block inputs when recomputing,
   * else those and everything the tapes saved (data shared with parameters not counted).
   */
  lastActivationBytes = 0;

  constructor(model: BlockModel) {
    if (model.blocks.length === 0) throw new EngineError('BlockwiseEngine: model has 0 blocks, expected at least 1');
    this.model = model;
    this.emitAt = lowestUses(model);
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
    const loss = await this.forwardBackwardOnDevice(input, targets, source, sink, opts);
    try {
      return lossValue((await loss.value.data())[0], loss.gradScale);
    } finally {
      loss.value.dispose();
    }
  }

  /**
   * forwardBackward with the loss left on the device (owned by the caller), so that reading it
   * does not wait for the device in the middle of a step: the trainer reads it with the step's
   * other figures at the end (step-readout.ts).
   */
  async forwardBackwardOnDevice(
    input: tf.Tensor,
    targets: tf.Tensor,
    source: ParamSource,
    sink: GradSink,
    opts: { gradScale?: number; recompute?: boolean } = {},
  ): Promise<DeviceLoss> {
    const recompute = opts.recompute ?? source.recomputeActivations ?? false;
    const passOpts = { gradScale: opts.gradScale ?? 1, recompute, emitAt: this.emitAt };
    const pass = new ForwardBackwardPass(this.model, input, targets, source, passOpts);
    try {
      this.lastActivationBytes = await pass.forward();
      for (let i = this.model.blocks.length - 1; i >= 0; i--) await pass.backward(i, sink);
      return pass.takeLoss();
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
