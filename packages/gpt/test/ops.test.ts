// The hand-written gradients of ops.ts and attention.ts against plain tfjs autodiff.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { registerAllGradients } from '@zeroring/backend';
import { initBackend } from '@zeroring/backend';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { attentionTfOps, causalSelfAttention } from '../src/attention.ts';
import {
  gelu,
  layerNorm,
  linear,
  matMul,
  matMulTransposed,
  softmaxCrossEntropy,
  tokenPositionEmbedding,
} from '../src/ops.ts';
import { Rng } from '@zeroring/core';

beforeAll(async () => {
  await registerAllGradients();
  await tf.setBackend('cpu');
  await tf.ready();
});

function randn(shape: number[], seed: number, std = 1): tf.Tensor {
  const rng = new Rng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  return tf.tensor(
    Float32Array.from({ length: n }, () => rng.normal() * std),
    shape,
  );
}

/** max |a - b| / (max |b| + 1e-6): a relative error that does not blow up near zero entries. */
function relErr(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]! / (tf.max(tf.abs(b)).dataSync()[0]! + 1e-6));
}

/** Compare value and input gradients of f and reference g under a random upstream gradient. */
function expectSameGrads(
  f: (...xs: tf.Tensor[]) => tf.Tensor,
  g: (...xs: tf.Tensor[]) => tf.Tensor,
  inputs: tf.Tensor[],
  tol = 1e-5,
): void {
  const yf = f(...inputs);
  const yg = g(...inputs);
  expect(yf.shape).toEqual(yg.shape);
  expect(relErr(yf, yg)).toBeLessThan(tol);
  const dy = randn(yf.shape, 99);
  const gf = tf.grads((...xs: tf.Tensor[]) => tf.sum(tf.mul(f(...xs), dy)))(inputs);
  const gg = tf.grads((...xs: tf.Tensor[]) => tf.sum(tf.mul(g(...xs), dy)))(inputs);
  for (let i = 0; i < inputs.length; i++) expect(relErr(gf[i]!, gg[i]!)).toBeLessThan(tol);
}

describe('fast-gradient layers match autodiff', () => {
  it('matMul (both transpose routes)', () => {
    expectSameGrads(
      (a, b) => matMul(a as tf.Tensor2D, b as tf.Tensor2D),
      (a, b) => tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D),
      [randn([6, 5], 1), randn([5, 7], 2)],
    );
    expectSameGrads(
      (a, b) => matMul(a as tf.Tensor2D, b as tf.Tensor2D),
      (a, b) => tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D),
      [randn([20, 9], 1), randn([9, 2], 2)],
    );
  });

  it('matMulTransposed', () => {
    expectSameGrads(
      (a, b) => matMulTransposed(a as tf.Tensor2D, b as tf.Tensor2D),
      (a, b) => tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D, false, true),
      [randn([6, 5], 1), randn([7, 5], 2)],
    );
  });

  it('linear', () => {
    expectSameGrads(
      (x, w, b) => linear(x as tf.Tensor2D, w!, b!),
      (x, w, b) => tf.add(tf.matMul(x as tf.Tensor2D, w as tf.Tensor2D), b!),
      [randn([6, 4], 3), randn([4, 8], 4), randn([8], 5)],
    );
  });

  it('layerNorm', () => {
    const ref = (x: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => {
      const { mean, variance } = tf.moments(x, -1, true);
      return tf.add(tf.mul(tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, 1e-5))), g), b);
    };
    expectSameGrads(
      (x, g, b) => layerNorm(x as tf.Tensor2D, g!, b!),
      (x, g, b) => ref(x!, g!, b!),
      [randn([5, 16], 6, 3), randn([16], 7), randn([16], 8)],
      1e-4,
    );
  });

  it('gelu equals the tanh form of GPT-2', () => {
    const ref = (x: tf.Tensor) =>
      tf.mul(
        tf.mul(x, 0.5),
        tf.add(1, tf.tanh(tf.mul(tf.add(x, tf.mul(tf.pow(x, 3), 0.044715)), Math.sqrt(2 / Math.PI)))),
      );
    expectSameGrads(
      (x) => gelu(x as tf.Tensor2D),
      (x) => ref(x!),
      [randn([7, 9], 9, 2)],
    );
  });

  it('tokenPositionEmbedding', () => {
    const ids = tf.tensor2d([3, 0, 3, 5, 1, 2], [2, 3], 'int32');
    const table = randn([6, 4], 10);
    const pos = randn([3, 4], 12);
    const f = (t: tf.Tensor, p: tf.Tensor) => tokenPositionEmbedding(ids, t, p);
    const g = (t: tf.Tensor, p: tf.Tensor) => tf.add(tf.reshape(tf.gather(t, tf.reshape(ids, [6])), [2, 3, 4]), p);
    expectSameGrads(f, g, [table, pos]);
  });

  it('softmaxCrossEntropy', () => {
    const targets = tf.tensor1d([2, 0, 4, 4], 'int32');
    const ref = (l: tf.Tensor) =>
      tf.neg(tf.mean(tf.sum(tf.mul(tf.logSoftmax(l), tf.oneHot(targets, 5).toFloat()), -1)));
    expectSameGrads(
      (l) => softmaxCrossEntropy(l as tf.Tensor2D, targets),
      (l) => ref(l!),
      [randn([4, 5], 11, 3)],
    );
  });
});

describe('causal self-attention', () => {
  const shape = { B: 2, T: 7, H: 3 };
  const C = 12;

  afterAll(() => tf.setBackend('cpu'));

  // Head size 4 takes the SIMD kernel (attention-simd.ts), head size 3 the JavaScript one.
  it.each([
    ['cpu', 12],
    ['wasm', 12],
    ['cpu', 9],
    ['wasm', 9],
  ] as const)(
    'host kernel on %s with C=%i matches the tfjs-ops form, forward and backward, and frees what it allocates',
    async (backend, width) => {
      await initBackend(backend, { logger: { info() {}, warn() {}, debug() {} } });
      expect(tf.getBackend()).toBe(backend); // the host kernel path, on the tensors' own memory
      const before = tf.memory().numTensors;
      tf.tidy(() =>
        expectSameGrads(
          (x) => causalSelfAttention(x as tf.Tensor2D, shape),
          (x) => attentionTfOps(x as tf.Tensor2D, shape),
          [randn([14, 3 * width], 12)],
          1e-5,
        ),
      );
      // The probabilities saved for backward are released once the gradient has been taken.
      expect(tf.memory().numTensors).toBe(before);
      await tf.setBackend('cpu');
    },
  );

  it('matches a naive per-head loop', () => {
    const qkv = randn([14, 3 * C], 13);
    const y = causalSelfAttention(qkv as tf.Tensor2D, shape).arraySync() as number[][];
    const x = qkv.arraySync() as number[][];
    const hs = C / shape.H;
    for (let b = 0; b < shape.B; b++)
      for (let h = 0; h < shape.H; h++)
        for (let i = 0; i < shape.T; i++) {
          const q = x[b * shape.T + i]!.slice(h * hs, h * hs + hs);
          const scores = Array.from({ length: i + 1 }, (_, j) => {
            const k = x[b * shape.T + j]!.slice(C + h * hs, C + h * hs + hs);
            return q.reduce((s, v, d) => s + v * k[d]!, 0) / Math.sqrt(hs);
          });
          const m = Math.max(...scores);
          const e = scores.map((s) => Math.exp(s - m));
          const z = e.reduce((a, c) => a + c, 0);
          for (let d = 0; d < hs; d++) {
            const want = e.reduce((s, p, j) => s + (p / z) * x[b * shape.T + j]![2 * C + h * hs + d]!, 0);
            expect(y[b * shape.T + i]![h * hs + d]).toBeCloseTo(want, 5);
          }
        }
  });

  it('rejects a qkv width the heads do not divide', () => {
    expect(() => causalSelfAttention(randn([14, 30], 1) as tf.Tensor2D, shape)).toThrow(/does not match/);
  });
});
