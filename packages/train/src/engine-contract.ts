// What the engine asks of whoever runs it: a source of each block's parameters and a sink for
// each block's gradients. Its own module, so that the engine and its pass both build on it.
import type { NamedTensors } from './model.ts';

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
