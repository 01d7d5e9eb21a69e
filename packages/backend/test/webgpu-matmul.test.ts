// The tiled WGSL matmul (src/webgpu-kernels/matmul.ts) against tf.matMul on the cpu backend:
// every transpose variant on sizes that are not multiples of the 64×64 tile or the 16-deep K
// step (edges, a single row, K below one step), a batched case, and the gradients through
// tiledMatMulWithGrad. Without an adapter the tests are reported as skipped with the reason;
// in CI, where setup installs lavapipe, a missing adapter fails instead.
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { tiledMatMul, tiledMatMulWithGrad } from '../src/index.ts';
import { webgpuSkipReason } from '../../../tests/fixtures/webgpu.ts';
import { runOn, values, worstError } from './helpers.ts';

const skipReason = await webgpuSkipReason('tiled matmul tests');

// float32 sums of up to ~200 products of values in [-1, 1]: cpu and the GPU add in other orders.
const ATOL = 1e-4;
const RTOL = 1e-5;

interface Case {
  a: number[];
  b: number[];
  transposeA: boolean;
  transposeB: boolean;
}

function operands(c: Case, seed: number): [tf.Tensor, tf.Tensor] {
  const size = (s: number[]) => s.reduce((x, y) => x * y, 1);
  return [tf.tensor(values(size(c.a), seed), c.a), tf.tensor(values(size(c.b), seed + 1), c.b)];
}

/** [M, K] x [K, N] as stored for each transpose variant. */
function shapes(m: number, k: number, n: number, transposeA: boolean, transposeB: boolean): Case {
  return { a: transposeA ? [k, m] : [m, k], b: transposeB ? [n, k] : [k, n], transposeA, transposeB };
}

const SIZES: Array<[number, number, number]> = [
  [1, 1, 1],
  [1, 37, 5],
  [65, 17, 63], // one past the tile in M, one past the K step, one short of the tile in N
  [130, 200, 67],
  [64, 16, 64], // exact tiles
  [7, 3, 129],
];
const VARIANTS: Array<[boolean, boolean]> = [
  [false, false],
  [false, true],
  [true, false],
  [true, true],
];

describe.skipIf(skipReason !== undefined)('tiledMatMul (WGSL) against cpu', () => {
  for (const [transposeA, transposeB] of VARIANTS) {
    it(`op(A) @ op(B) with transposeA=${transposeA}, transposeB=${transposeB} on awkward sizes`, async () => {
      for (const [m, k, n] of SIZES) {
        const c = shapes(m, k, n, transposeA, transposeB);
        const [ref] = await runOn('cpu', () => [tf.matMul(...operands(c, m + k + n), transposeA, transposeB)]);
        const [got] = await runOn('webgpu', () => [tiledMatMul(...operands(c, m + k + n), transposeA, transposeB)]);
        expect(worstError(got!, ref!, ATOL, RTOL), `${m}x${k}x${n}`).toBeLessThanOrEqual(1);
      }
    });
  }

  it('batched [batch, M, K] @ [batch, K, N]ᵀ, and rejects shapes that do not multiply', async () => {
    const c: Case = { a: [3, 70, 19], b: [3, 33, 19], transposeA: false, transposeB: true };
    const [ref] = await runOn('cpu', () => [tf.matMul(...operands(c, 5), false, true)]);
    const [got] = await runOn('webgpu', () => {
      const out = tiledMatMul(...operands(c, 5), false, true);
      expect(out.shape).toEqual([3, 70, 33]);
      return [out];
    });
    expect(worstError(got!, ref!, ATOL, RTOL)).toBeLessThanOrEqual(1);
    await runOn('webgpu', () => {
      expect(() => tiledMatMul(tf.zeros([4, 5]), tf.zeros([6, 7]))).toThrow(/do not multiply/);
      return [];
    });
  });

  for (const [transposeA, transposeB] of VARIANTS) {
    it(`gradients of A and B with transposeA=${transposeA}, transposeB=${transposeB}`, async () => {
      const c = shapes(67, 45, 70, transposeA, transposeB);
      // A weighted sum of the output, so every element of dC differs.
      const grads = (mm: typeof tf.matMul) => () => {
        const [a, b] = operands(c, 11);
        const w = tf.tensor(values(67 * 70, 13), [67, 70]);
        const g = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(mm(x, y, transposeA, transposeB), w)));
        return g([a, b]);
      };
      const ref = await runOn('cpu', grads(tf.matMul));
      const got = await runOn('webgpu', grads(tiledMatMulWithGrad as typeof tf.matMul));
      got.forEach((g, i) => expect(worstError(g, ref[i]!, ATOL, RTOL), i === 0 ? 'dA' : 'dB').toBeLessThanOrEqual(1));
    });
  }
});
