// The ops one GPT training step uses, as small functions returning (loss, gradients), so a
// test can run them on every backend and compare against cpu.
import * as tf from '@tensorflow/tfjs-core';
import { values } from './helpers.ts';

const B = 2,
  T = 8,
  C = 16,
  H = 2,
  V = 11;

function layerNorm(x: tf.Tensor, g: tf.Tensor, b: tf.Tensor): tf.Tensor {
  const { mean, variance } = tf.moments(x, -1, true);
  return tf.add(tf.mul(tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, 1e-5))), g), b);
}

function geluTanh(x: tf.Tensor): tf.Tensor {
  const inner = tf.mul(Math.sqrt(2 / Math.PI), tf.add(x, tf.mul(0.044715, tf.pow(x, 3))));
  return tf.mul(tf.mul(0.5, x), tf.add(1, tf.tanh(inner)));
}

function geluErf(x: tf.Tensor): tf.Tensor {
  return tf.mul(tf.mul(0.5, x), tf.add(1, tf.erf(tf.div(x, Math.SQRT2))));
}

/** A one-layer GPT (embeddings, causal attention, GELU MLP, tied head, cross-entropy). */
export function gptStep(gelu: 'tanh' | 'erf'): tf.Tensor[] {
  const ids = tf.tensor2d(
    Int32Array.from({ length: B * T }, (_, i) => (i * 7 + 3) % V),
    [B, T],
    'int32',
  );
  const targets = tf.tensor1d(
    Int32Array.from({ length: B * T }, (_, i) => (i * 5 + 1) % V),
    'int32',
  );
  const p = {
    wte: tf.tensor2d(values(V * C, 1, 0.5), [V, C]),
    wpe: tf.tensor2d(values(T * C, 2, 0.5), [T, C]),
    g1: tf.tensor1d(values(C, 3, 0.2)).add(1),
    b1: tf.tensor1d(values(C, 4, 0.1)),
    wqkv: tf.tensor2d(values(C * 3 * C, 5, 0.3), [C, 3 * C]),
    wo: tf.tensor2d(values(C * C, 6, 0.3), [C, C]),
    w1: tf.tensor2d(values(C * 4 * C, 7, 0.3), [C, 4 * C]),
    w2: tf.tensor2d(values(4 * C * C, 8, 0.3), [4 * C, C]),
  };
  const names = Object.keys(p) as (keyof typeof p)[];
  const mask = tf.linalg.bandPart(tf.ones([T, T]), -1, 0);
  const act = gelu === 'tanh' ? geluTanh : geluErf;
  const f = (...ts: tf.Tensor[]): tf.Scalar => {
    const q = Object.fromEntries(names.map((n, i) => [n, ts[i]])) as typeof p;
    let x = tf.add(tf.gather(q.wte, ids), q.wpe); // [B,T,C]
    const h = layerNorm(x, q.g1, q.b1);
    const qkv = tf.reshape(tf.matMul(tf.reshape(h, [B * T, C]), q.wqkv), [B, T, 3, H, C / H]);
    const [qh, kh, vh] = tf.unstack(tf.transpose(qkv, [2, 0, 3, 1, 4])); // each [B,H,T,D]
    const att = tf.mul(tf.matMul(qh, kh, false, true), 1 / Math.sqrt(C / H)); // batchMatMul
    const masked = tf.where(tf.equal(mask, 0), tf.fill([T, T], -1e9), att);
    const y = tf.matMul(tf.softmax(masked), vh); // [B,H,T,D]
    const merged = tf.reshape(tf.transpose(y, [0, 2, 1, 3]), [B * T, C]);
    x = tf.add(x, tf.reshape(tf.matMul(merged, q.wo), [B, T, C]));
    const m = act(tf.matMul(tf.reshape(x, [B * T, C]), q.w1));
    x = tf.add(x, tf.reshape(tf.matMul(m, q.w2), [B, T, C]));
    const logits = tf.matMul(tf.reshape(x, [B * T, C]), q.wte, false, true); // tied head
    const logp = tf.logSoftmax(logits);
    const picked = tf.sum(tf.mul(logp, tf.oneHot(targets, V)), -1);
    return tf.neg(tf.mean(picked)) as tf.Scalar;
  };
  const { value, grads } = tf.valueAndGrads(f)(names.map((n) => p[n]));
  return [value, ...grads];
}
