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
import * as tf from '@tensorflow/tfjs-core';
import type { BlockModel, NamedTensors } from './model.ts';
import { backwardOf, discardRecording, keptBytes, recordForward, type RecordedForward } from './tape.ts';

export type Phase = 'forward' | 'backward';

/** Where the engine gets a block's parameters (resident tensors, or gathered shards for ZeRO-3). */
export interface ParamSource {
  /**
   * The block's parameters by name (every name in `block.params`). The engine only reads them
   * and never disposes them; they must stay valid until `release(block, phase)`.
   */
  acquire(block: number, phase: Phase): NamedTensors | Promise<NamedTensors>;
  /** The engine is done with the tensors of `acquire(block, phase)`. */
  release(block: number, phase: Phase): void | Promise<void>;
  /**
   * True when the tensors given for forward must not stay alive until backward (ZeRO-3 frees
   * gathered blocks): the engine then keeps only block inputs and recomputes each block's forward
   * during backward. Otherwise (the default) it keeps what backward needs from the forward.
   */
  readonly recomputeActivations?: boolean;
}

/** Where gradients go as soon as backward produces them. */
export interface GradSink {
  /**
   * Gradients of the loss with respect to the parameters *first used* by `block` (tied
   * parameters complete, at their lowest block). Called in reverse block order, at most once per
   * block per backward; a block whose parameters all belong to a lower block is skipped. The
   * sink owns the tensors and must dispose them. May be async: the engine awaits it before the
   * next block, so keep it short (issue communication, don't wait for it).
   */
  onBlockGrads(block: number, grads: NamedTensors): void | Promise<void>;
}

/** The (block, phase) sequence one `forwardBackward` acquires, in order. */
export function acquireSchedule(numBlocks: number): Array<{ block: number; phase: Phase }> {
  const order: Array<{ block: number; phase: Phase }> = [];
  for (let i = 0; i < numBlocks - 1; i++) order.push({ block: i, phase: 'forward' });
  for (let i = numBlocks - 1; i >= 0; i--) order.push({ block: i, phase: 'backward' });
  return order;
}

export class EngineError extends Error {
  override name = 'EngineError';
}

const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function tensorBytes(t: tf.Tensor): number {
  return t.size * (t.dtype === 'complex64' ? 8 : 4);
}

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
        if (names.has(p.name)) throw new EngineError(`block "${block.name}" lists parameter "${p.name}" twice, expected each name once per block`);
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
  async forwardBackward(input: tf.Tensor, targets: tf.Tensor, source: ParamSource, sink: GradSink, opts: { gradScale?: number; recompute?: boolean } = {}): Promise<number> {
    const gradScale = opts.gradScale ?? 1;
    const recompute = opts.recompute ?? source.recomputeActivations ?? false;
    const { blocks } = this.model;
    const L = blocks.length;
    // inputs[i] is block i's input; inputs[0] is the caller's tensor and is never disposed here.
    const inputs: tf.Tensor[] = [input];
    // Without recompute: block i's kept tape, and the parameter tensors its forward used.
    const recorded: Array<{ rec: RecordedForward; params: NamedTensors } | undefined> = [];
    let held = 0;
    let peak = 0;
    try {
      for (let i = 0; i < L - 1; i++) {
        const params = await this.acquire(source, i, 'forward');
        let y: tf.Tensor;
        if (recompute) y = tf.tidy(() => blocks[i].forward(params, inputs[i]));
        else {
          const rec = recordForward(() => blocks[i].forward(params, inputs[i]));
          recorded[i] = { rec, params };
          y = rec.output;
        }
        await source.release(i, 'forward');
        inputs.push(y);
        held += tensorBytes(y);
        peak = Math.max(peak, held);
        await yieldToEventLoop();
      }
      const tapes = recorded.filter((r) => r !== undefined);
      this.lastActivationBytes = recompute ? peak : keptBytes(tapes.map((r) => r.rec), inputs.slice(1), tapes.flatMap((r) => Object.values(r.params)));

      const pending = new Map<string, tf.Tensor>(); // tied-parameter contributions awaiting their emit block
      let dy: tf.Tensor | undefined;
      let lossValue: tf.Scalar | undefined;
      try {
        for (let i = L - 1; i >= 0; i--) {
          const block = blocks[i];
          const names = block.params.map((p) => p.name);
          const params = await this.acquire(source, i, 'backward');
          const x = inputs[i];
          // Block 0's input is usually token ids: not differentiable, captured instead of an argument.
          const wrtInput = i > 0;
          const call = (args: tf.Tensor[]): tf.Tensor => {
            const named: NamedTensors = {};
            names.forEach((n, k) => (named[n] = args[k]));
            return block.forward(named, wrtInput ? args[names.length] : x);
          };
          const argsOf = (p: NamedTensors): tf.Tensor[] => [...names.map((n) => p[n]), ...(wrtInput ? [x] : [])];
          const kept = recorded[i];
          recorded[i] = undefined;
          let grads: tf.Tensor[];
          if (names.length === 0 && !wrtInput && i < L - 1) {
            grads = []; // a parameter-free first block: nothing to differentiate
            if (kept) discardRecording(kept.rec);
          } else if (i === L - 1) {
            const r = tf.valueAndGrads((...a: tf.Tensor[]) => {
              const l = this.model.loss(call(a), targets);
              return gradScale === 1 ? l : tf.mul(l, gradScale);
            })(argsOf(params));
            lossValue = r.value as tf.Scalar;
            grads = r.grads;
          } else if (kept) {
            // The tape knows the tensors its forward used: differentiate with respect to those.
            grads = backwardOf(kept.rec, argsOf(kept.params), dy!);
          } else {
            grads = tf.grads((...a: tf.Tensor[]) => call(a))(argsOf(params), dy);
          }
          await source.release(i, 'backward');
          dy?.dispose();
          dy = wrtInput ? grads[names.length] : undefined;
          if (i > 0) {
            held -= tensorBytes(inputs[i]);
            inputs[i].dispose();
          }

          const out: NamedTensors = {};
          names.forEach((n, k) => {
            let g = grads[k];
            const prev = pending.get(n);
            if (prev) {
              const sum = tf.add(prev, g);
              prev.dispose();
              g.dispose();
              pending.delete(n);
              g = sum;
            }
            if (this.emitAt.get(n) === i) out[n] = g;
            else pending.set(n, g);
          });
          if (Object.keys(out).length > 0) await sink.onBlockGrads(i, out);
          await yieldToEventLoop();
        }
      } catch (err) {
        lossValue?.dispose();
        throw err;
      } finally {
        dy?.dispose();
        for (const g of pending.values()) g.dispose(); // left only when backward stopped early
      }
      if (!lossValue) throw new EngineError('internal: loss was not computed');
      const loss = (await lossValue.data())[0];
      lossValue.dispose();
      return gradScale === 1 ? loss : loss / gradScale;
    } finally {
      // On error, free whatever activations are still held (never the caller's input).
      for (const r of recorded) if (r) discardRecording(r.rec);
      for (let i = 1; i < inputs.length; i++) if (!inputs[i].isDisposed) inputs[i].dispose();
    }
  }

  /** Forward of every block: the last block's output (e.g. logits), owned by the caller. */
  async forward(input: tf.Tensor, source: ParamSource): Promise<tf.Tensor> {
    const { blocks } = this.model;
    let x = input;
    for (let i = 0; i < blocks.length; i++) {
      const params = await this.acquire(source, i, 'forward');
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

  private async acquire(source: ParamSource, i: number, phase: Phase): Promise<NamedTensors> {
    const params = await source.acquire(i, phase);
    for (const p of this.model.blocks[i].params) {
      const t = params[p.name];
      if (!t) throw new EngineError(`ParamSource gave block ${i} ("${this.model.blocks[i].name}") no tensor for "${p.name}", expected one of shape [${p.shape}]`);
    }
    return params;
  }
}
