// One forward + backward of a block-list model on one micro-batch: what BlockwiseEngine's
// forwardBackward runs (engine.ts explains the order and what survives from forward to backward).
//
// The pass owns everything that lives between the two walks: each block's input, each block's
// kept tape (unless it recomputes), the upstream gradient dy, the gradient contributions of tied
// parameters waiting for their lowest block, and the loss. dispose() frees whatever of that is
// still held, so a pass that fails half way leaks nothing (the caller's input is never freed).
import * as tf from '@tensorflow/tfjs-core';
import type { BlockModel, NamedTensors } from './model.ts';
import type { GradSink, ParamSource, Phase } from './engine-contract.ts';
import { backwardOf, discardRecording, keptBytes, recordForward, type RecordedForward } from './tape.ts';

/** The engine's errors: a model or source that breaks the contract. */
export class EngineError extends Error {
  override name = 'EngineError';
}

export const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function tensorBytes(t: tf.Tensor): number {
  return t.size * (t.dtype === 'complex64' ? 8 : 4);
}

/** The source's tensors for block i, checked to hold every parameter the block reads. */
export async function acquireBlock(
  model: BlockModel,
  source: ParamSource,
  i: number,
  phase: Phase,
): Promise<NamedTensors> {
  const params = await source.acquire(i, phase);
  for (const p of model.blocks[i].params) {
    if (!params[p.name]) {
      throw new EngineError(
        `ParamSource gave block ${i} ("${model.blocks[i].name}") no tensor for "${p.name}", ` +
          `expected one of shape [${p.shape}]`,
      );
    }
  }
  return params;
}

/**
 * A micro-batch's loss left on the device, to be read with the step's other figures: `value` is
 * the mean loss times `gradScale` (what backward started from); lossValue() undoes the scale.
 */
export interface DeviceLoss {
  value: tf.Scalar;
  gradScale: number;
}

/** The mean loss (unscaled) from the value read back of a DeviceLoss. */
export function lossValue(read: number, gradScale: number): number {
  return gradScale === 1 ? read : read / gradScale;
}

export interface PassOptions {
  /** Multiplies every gradient (backward starts from gradScale * loss). */
  gradScale: number;
  /** Keep only block inputs and recompute each block's forward in backward. */
  recompute: boolean;
  /** For each parameter, the lowest block that uses it (where its complete gradient is emitted). */
  emitAt: ReadonlyMap<string, number>;
}

export class ForwardBackwardPass {
  /** inputs[i] is block i's input; inputs[0] is the caller's tensor and is never disposed here. */
  private readonly inputs: tf.Tensor[];
  /** Without recompute: block i's kept tape, and the parameter tensors its forward used. */
  private readonly recorded: Array<{ rec: RecordedForward; params: NamedTensors } | undefined> = [];
  /** Tied-parameter contributions awaiting their emit block. */
  private readonly pending = new Map<string, tf.Tensor>();
  private dy: tf.Tensor | undefined;
  private lossValue: tf.Scalar | undefined;
  /** Bytes of block outputs held for backward (the activations when recomputing). */
  private held = 0;

  constructor(
    private readonly model: BlockModel,
    input: tf.Tensor,
    private targets: tf.Tensor,
    private readonly source: ParamSource,
    private readonly opts: PassOptions,
  ) {
    this.inputs = [input];
  }

  /**
   * The last block's input once forward has run (owned by the pass): a pipeline stage's output,
   * when the stage model ends in a parameter-free block (pipeline/stage.ts).
   */
  lastInput(): tf.Tensor {
    if (this.inputs.length !== this.model.blocks.length) throw new EngineError('internal: forward has not run');
    return this.inputs[this.inputs.length - 1];
  }

  /** Targets known only after forward (a pipeline stage's output gradient); the caller owns them. */
  setTargets(targets: tf.Tensor): void {
    this.targets = targets;
  }

  /**
   * The gradient for the input of the block last run backward (owned by the caller from now):
   * a pipeline stage's input gradient, taken after backward of its first real block.
   */
  takeInputGradient(): tf.Tensor {
    const dy = this.dy;
    if (!dy) throw new EngineError('internal: no input gradient (backward of a block above 0 has not run)');
    this.dy = undefined;
    return dy;
  }

  /**
   * Forward of blocks 0 .. L-2 (the last one runs fused with the loss in backward). Returns the
   * bytes kept for backward: block inputs when recomputing, else those and everything the tapes
   * saved (data shared with parameters not counted).
   */
  async forward(): Promise<number> {
    const { blocks } = this.model;
    let peak = 0;
    for (let i = 0; i < blocks.length - 1; i++) {
      const params = await acquireBlock(this.model, this.source, i, 'forward');
      const x = this.inputs[i];
      let y: tf.Tensor;
      if (this.opts.recompute) y = tf.tidy(() => blocks[i].forward(params, x));
      else {
        const rec = recordForward(() => blocks[i].forward(params, x));
        this.recorded[i] = { rec, params };
        y = rec.output;
      }
      await this.source.release(i, 'forward');
      this.inputs.push(y);
      this.held += tensorBytes(y);
      peak = Math.max(peak, this.held);
      await yieldToEventLoop();
    }
    if (this.opts.recompute) return peak;
    const tapes = this.recorded.filter((r) => r !== undefined);
    const params = tapes.flatMap((r) => Object.values(r.params));
    return keptBytes(
      tapes.map((r) => r.rec),
      this.inputs.slice(1),
      params,
    );
  }

  /** Backward of block i: its gradients (and dy for the block below), handed to `sink`. */
  async backward(i: number, sink: GradSink): Promise<void> {
    const names = this.model.blocks[i].params.map((p) => p.name);
    const params = await acquireBlock(this.model, this.source, i, 'backward');
    const grads = this.blockGradients(i, names, params);
    await this.source.release(i, 'backward');
    this.dy?.dispose();
    // Block 0's input is usually token ids: not differentiable, so it has no gradient.
    this.dy = i > 0 ? grads[names.length] : undefined;
    if (i > 0) {
      this.held -= tensorBytes(this.inputs[i]);
      this.inputs[i].dispose();
    }
    const out = this.completeGradients(i, names, grads);
    if (Object.keys(out).length > 0) await sink.onBlockGrads(i, out);
    await yieldToEventLoop();
  }

  /** The loss still on the device (owned by the caller), once backward reached block 0. */
  takeLoss(): DeviceLoss {
    const value = this.lossValue;
    if (!value) throw new EngineError('internal: loss was not computed');
    this.lossValue = undefined;
    return { value, gradScale: this.opts.gradScale };
  }

  /** Frees whatever the pass still holds (never the caller's input). */
  dispose(): void {
    this.lossValue?.dispose();
    this.dy?.dispose();
    for (const g of this.pending.values()) g.dispose(); // left only when backward stopped early
    this.pending.clear();
    for (const r of this.recorded) if (r) discardRecording(r.rec);
    for (let i = 1; i < this.inputs.length; i++) if (!this.inputs[i].isDisposed) this.inputs[i].dispose();
  }

  /**
   * Gradients of block i with respect to its parameters (in `names` order), followed by the
   * gradient for its input when i > 0. The last block's come fused with the loss; the others'
   * from the kept tape, or from a recomputed forward.
   */
  private blockGradients(i: number, names: string[], params: NamedTensors): tf.Tensor[] {
    const block = this.model.blocks[i];
    const x = this.inputs[i];
    const wrtInput = i > 0;
    // Block 0's input is captured instead of an argument (token ids are not differentiable).
    const call = (args: tf.Tensor[]): tf.Tensor => {
      const named: NamedTensors = {};
      names.forEach((n, k) => (named[n] = args[k]));
      return block.forward(named, wrtInput ? args[names.length] : x);
    };
    const argsOf = (p: NamedTensors): tf.Tensor[] => [...names.map((n) => p[n]), ...(wrtInput ? [x] : [])];
    const kept = this.recorded[i];
    this.recorded[i] = undefined;
    const last = i === this.model.blocks.length - 1;
    if (names.length === 0 && !wrtInput && !last) {
      if (kept) discardRecording(kept.rec);
      return []; // a parameter-free first block: nothing to differentiate
    }
    if (last) {
      const { gradScale } = this.opts;
      const r = tf.valueAndGrads((...a: tf.Tensor[]) => {
        const l = this.model.loss(call(a), this.targets);
        return gradScale === 1 ? l : tf.mul(l, gradScale);
      })(argsOf(params));
      this.lossValue = r.value as tf.Scalar;
      return r.grads;
    }
    // The tape knows the tensors its forward used: differentiate with respect to those.
    if (kept) return backwardOf(kept.rec, argsOf(kept.params), this.dy!);
    return tf.grads((...a: tf.Tensor[]) => call(a))(argsOf(params), this.dy);
  }

  /**
   * The gradients block i emits: those of the parameters it is the lowest user of, with the
   * contributions of higher blocks (tied parameters) added; the others wait in `pending`.
   */
  private completeGradients(i: number, names: string[], grads: tf.Tensor[]): NamedTensors {
    const out: NamedTensors = {};
    names.forEach((n, k) => {
      let g = grads[k];
      const prev = this.pending.get(n);
      if (prev) {
        const sum = tf.add(prev, g);
        prev.dispose();
        g.dispose();
        this.pending.delete(n);
        g = sum;
      }
      if (this.opts.emitAt.get(n) === i) out[n] = g;
      else this.pending.set(n, g);
    });
    return out;
  }
}
