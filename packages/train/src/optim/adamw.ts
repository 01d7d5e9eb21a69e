// AdamW on the device (tfjs ops), following torch.optim.AdamW (foreach=False) step for step, so
// that device and host optimizers (optim/host-adamw.ts) agree to float rounding. Which parameters
// decay follows nanoGPT: tensors of 2 or more dimensions (matmul weights, embeddings) decay,
// biases and LayerNorm gains/offsets (1-D) do not.
// Details (the update, line by line): docs/internals.md#device-adamw
import * as tf from '@tensorflow/tfjs-core';

export interface AdamWConfig {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

export const DEFAULT_ADAMW: AdamWConfig = { beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1 };

/** nanoGPT's rule: decay only parameters with at least 2 dimensions. */
export function decays(shape: readonly number[]): boolean {
  return shape.length >= 2;
}

/** Scalars the update needs at step t (1-based), computed in float64 once per step like torch. */
export function adamwScalars(cfg: AdamWConfig, lr: number, t: number, decay: boolean) {
  return {
    decayFactor: decay ? 1 - lr * cfg.weightDecay : 1,
    stepSize: lr / (1 - cfg.beta1 ** t),
    bc2Sqrt: Math.sqrt(1 - cfg.beta2 ** t),
  };
}

export interface AdamWSlot {
  m: tf.Tensor;
  v: tf.Tensor;
}

/**
 * One AdamW update of `param` with `grad`. Returns the new parameter and new moments; the caller
 * disposes the old ones (kept separate so a strategy can hold parameters as tensors or variables).
 */
export function adamwUpdate(
  cfg: AdamWConfig,
  param: tf.Tensor,
  grad: tf.Tensor,
  slot: AdamWSlot,
  lr: number,
  t: number,
  decay: boolean,
): { param: tf.Tensor; m: tf.Tensor; v: tf.Tensor } {
  const s = adamwScalars(cfg, lr, t, decay);
  return tf.tidy(() => {
    const p0 = s.decayFactor === 1 ? param : tf.mul(param, s.decayFactor);
    const m = tf.add(slot.m, tf.mul(tf.sub(grad, slot.m), 1 - cfg.beta1));
    const v = tf.add(tf.mul(slot.v, cfg.beta2), tf.mul(tf.mul(grad, grad), 1 - cfg.beta2));
    const denom = tf.add(tf.div(tf.sqrt(v), s.bc2Sqrt), cfg.eps);
    const p = tf.sub(p0, tf.mul(tf.div(m, denom), s.stepSize));
    return { param: p, m, v };
  });
}
