// Our WGSL kernels (column sum, LayerNorm, GELU, softmax cross-entropy) on real shaders,
// against the same math as plain tfjs ops (and tfjs autodiff for the gradients) on cpu, over
// awkward sizes: row counts that are not multiples of any workgroup, more rows than one block
// of the column kernels, C = 1 and 3, and row lengths both sides of the row kernels' switch
// to 256 invocations. Without an adapter these tests skip with the reason printed; under CI
// they fail instead.
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import {
  gpuWorkBetween,
  gpuWorkCounts,
  initBackend,
  webgpuColumnSum,
  webgpuCrossEntropyGrad,
  webgpuCrossEntropyMean,
  webgpuCrossEntropyRows,
  webgpuGelu,
  webgpuGeluGrad,
  webgpuLayerNorm,
  webgpuLayerNormInputGrad,
  webgpuLayerNormGainGrad,
} from '../src/index.ts';
import { quietLogger, runOn, values, worstError } from './helpers.ts';
import { webgpuSkipReason } from '../../../tests/fixtures/webgpu.ts';

const skipReason = await webgpuSkipReason('webgpu kernel tests');
const skip = skipReason !== undefined;

const EPS = 1e-5;
const RTOL = 1e-5;

/** Runs `kernel` on webgpu and `reference` on cpu; every output must agree within atol + RTOL·|ref|. */
async function expectClose(kernel: () => tf.Tensor[], reference: () => tf.Tensor[], atol: number): Promise<void> {
  const ref = await runOn('cpu', reference);
  const got = await runOn('webgpu', kernel);
  expect(got.length).toBe(ref.length);
  got.forEach((g, i) => expect(worstError(g, ref[i]!, atol, RTOL), `output ${i}`).toBeLessThanOrEqual(1));
}

/** Dispatches that `kernel` records on webgpu, its inputs uploaded before and its output read after. */
async function dispatchesOf(inputs: () => tf.Tensor[], kernel: (...xs: tf.Tensor[]) => tf.Tensor): Promise<number> {
  await initBackend('webgpu', { logger: quietLogger });
  const xs = inputs();
  await Promise.all(xs.map((t) => t.data()));
  const before = gpuWorkCounts();
  const out = kernel(...xs);
  await out.data();
  const dispatches = gpuWorkBetween(before, gpuWorkCounts()).dispatches;
  tf.dispose([...xs, out]);
  return dispatches;
}

const matrix = (rows: number, cols: number, seed: number, scale = 1) =>
  tf.tensor2d(values(rows * cols, seed, scale), [rows, cols]);

function layerNormRef(x: tf.Tensor, g: tf.Tensor, b: tf.Tensor): tf.Tensor {
  const xc = tf.sub(x, tf.mean(x, -1, true));
  const rstd = tf.rsqrt(tf.add(tf.mean(tf.square(xc), -1, true), EPS));
  return tf.add(tf.mul(tf.mul(xc, rstd), g), b);
}

function geluRef(x: tf.Tensor): tf.Tensor {
  const z = tf.mul(Math.sqrt(2 / Math.PI), tf.add(x, tf.mul(0.044715, tf.pow(x, 3))));
  return tf.mul(tf.mul(0.5, x), tf.add(1, tf.tanh(z)));
}

function crossEntropyRef(logits: tf.Tensor2D, targets: tf.Tensor1D): tf.Scalar {
  const picked = tf.sum(tf.mul(tf.logSoftmax(logits), tf.oneHot(targets, logits.shape[1])), -1);
  return tf.neg(tf.mean(picked)) as tf.Scalar;
}

// [rows, cols]: 1 row; rows not a multiple of 64 or 256; more than one 256-row block; wide rows.
const SHAPES: Array<[number, number]> = [
  [1, 1],
  [7, 3],
  [37, 100],
  [300, 1],
  [300, 384],
  [513, 768],
  [5, 2500],
];

describe('webgpu kernels match cpu', () => {
  it.skipIf(skip)('a WebGPU adapter is present', () => {
    expect(skipReason).toBeUndefined();
  });

  it.skipIf(skip)('column sum', async () => {
    for (const [n, c] of SHAPES) {
      await expectClose(
        () => [webgpuColumnSum(matrix(n, c, n + c))],
        () => [tf.sum(matrix(n, c, n + c), 0)],
        1e-5 * Math.sqrt(n),
      );
    }
    expect(
      await dispatchesOf(
        () => [matrix(300, 384, 1)],
        (x) => webgpuColumnSum(x as tf.Tensor2D),
      ),
    ).toBe(1);
  });

  it.skipIf(skip)('LayerNorm forward, input gradient and gain gradient (shift: column sum)', async () => {
    for (const [n, c] of SHAPES) {
      // An offset mean (3) and a spread (2) unlike the unit normal the gain and shift see.
      const x = () => tf.add(matrix(n, c, 11 * n + c, 2), 3);
      const g = () => tf.add(tf.tensor1d(values(c, c + 1, 0.5)), 1);
      const b = () => tf.tensor1d(values(c, c + 2, 0.5));
      const dy = () => matrix(n, c, 13 * n + c);
      await expectClose(
        () => {
          const [xs, gs, dys] = [x() as tf.Tensor2D, g(), dy()];
          return [
            webgpuLayerNorm(xs, gs, b(), EPS),
            webgpuLayerNormInputGrad(xs, gs, dys, EPS),
            webgpuLayerNormGainGrad(xs, dys, EPS),
            webgpuColumnSum(dys),
          ];
        },
        () => {
          const dys = dy();
          const f = (xs: tf.Tensor, gs: tf.Tensor, bs: tf.Tensor) => tf.sum(tf.mul(layerNormRef(xs, gs, bs), dys));
          const grads = tf.grads(f)([x(), g(), b()]);
          return [layerNormRef(x(), g(), b()), ...grads];
        },
        1e-5 * Math.sqrt(n),
      );
    }
    const inputs = () => [
      matrix(300, 384, 1),
      tf.tensor1d(values(384, 2)),
      tf.tensor1d(values(384, 3)),
      matrix(300, 384, 4),
    ];
    type T2 = tf.Tensor2D;
    expect(await dispatchesOf(inputs, (x, g, b) => webgpuLayerNorm(x as T2, g!, b!, EPS))).toBe(1);
    expect(await dispatchesOf(inputs, (x, g, _, dy) => webgpuLayerNormInputGrad(x as T2, g!, dy as T2, EPS))).toBe(1);
    expect(await dispatchesOf(inputs, (x, _g, _b, dy) => webgpuLayerNormGainGrad(x as T2, dy as T2, EPS))).toBe(1);
  });

  it.skipIf(skip)('GELU and its gradient', async () => {
    for (const [n, c] of SHAPES) {
      const x = () => matrix(n, c, 17 * n + c, 4);
      const dy = () => matrix(n, c, 19 * n + c);
      await expectClose(
        () => [webgpuGelu(x()), webgpuGeluGrad(x(), dy())],
        () => {
          const dys = dy();
          return [geluRef(x()), tf.grad((xs: tf.Tensor) => tf.sum(tf.mul(geluRef(xs), dys)))(x())];
        },
        1e-6,
      );
    }
    const inputs = () => [matrix(300, 384, 1), matrix(300, 384, 2)];
    expect(await dispatchesOf(inputs, (x) => webgpuGelu(x!))).toBe(1);
    expect(await dispatchesOf(inputs, (x, dy) => webgpuGeluGrad(x!, dy!))).toBe(1);
  });

  it.skipIf(skip)('softmax cross-entropy (loss and gradient) against int32 targets', async () => {
    // [rows, vocabulary]; the vocabularies bracket the tiny model's, 2500 takes the wide-row path.
    const cases: Array<[number, number]> = [
      [1, 65],
      [37, 65],
      [300, 100],
      [1000, 77],
      [9, 2500],
    ];
    for (const [n, v] of cases) {
      const logits = () => matrix(n, v, 23 * n + v, 5);
      // One target outside [0, V): tf.oneHot gives it a zero row, so it adds no loss.
      const ids = Int32Array.from({ length: n }, (_, i) => (i === 4 ? -1 : (i * 31 + 7) % v));
      const targets = () => tf.tensor1d(ids, 'int32');
      const dy = () => tf.scalar(1.7);
      await expectClose(
        () => {
          const [ls, ts] = [logits(), targets()];
          const rows = webgpuCrossEntropyRows(ls, ts);
          return [webgpuCrossEntropyMean(rows), webgpuCrossEntropyGrad(ls, ts, rows, dy())];
        },
        () => {
          const ts = targets();
          const loss = (ls: tf.Tensor) => tf.mul(crossEntropyRef(ls as tf.Tensor2D, ts), dy());
          return [crossEntropyRef(logits(), ts), tf.grad(loss)(logits())];
        },
        1e-6,
      );
    }
    const inputs = () => [matrix(300, 100, 1), tf.tensor1d(new Int32Array(300), 'int32'), tf.scalar(1)];
    type T2 = tf.Tensor2D;
    type T1 = tf.Tensor1D;
    const rows = (l: tf.Tensor, t: tf.Tensor) => webgpuCrossEntropyRows(l as T2, t as T1);
    expect(await dispatchesOf(inputs, (l, t) => rows(l!, t!))).toBe(1);
    expect(await dispatchesOf(inputs, (l, t) => tf.tidy(() => webgpuCrossEntropyMean(rows(l!, t!))))).toBe(2);
    const grad = (l: tf.Tensor, t: tf.Tensor, dy: tf.Tensor) =>
      tf.tidy(() => webgpuCrossEntropyGrad(l as T2, t as T1, rows(l, t), dy as tf.Scalar));
    expect(await dispatchesOf(inputs, (l, t, dy) => grad(l!, t!, dy!))).toBe(2);
  });
});
