// The register-tile WGSL matmul (src/webgpu-kernels/matmul-register.ts) and the per-shape choice
// (matmul-choice.ts) against tf.matMul on the cpu backend: every transpose variant, with and
// without a bias, for each tile, on sizes that are not multiples of 4 or of the tile (edges,
// single rows and columns, K below the 4-step unroll). Then matMulAuto: before and after its
// measurement the results match cpu, the measurement records every candidate's time without
// reading anything back, and the forced modes dispatch what they say. Without an adapter the
// tests are reported as skipped; in CI a missing adapter fails instead.
import * as tf from '@tensorflow/tfjs-core';
import { afterEach, describe, expect, it } from 'vitest';
import {
  initBackend,
  gpuWorkBetween,
  gpuWorkCounts,
  matMulAuto,
  matMulChoices,
  REGISTER_TILES,
  registerMatMul,
  settleMatMulChoices,
} from '../src/index.ts';
import { quietLogger, runOn, values, worstError } from './helpers.ts';
import { webgpuSkipReason } from '../../../tests/fixtures/webgpu.ts';

const skipReason = await webgpuSkipReason('register matmul tests');

// float32 sums of up to ~200 products of values in [-1, 1]: cpu and the GPU add in other orders.
const ATOL = 1e-4;
const RTOL = 1e-5;

interface Operands {
  a: tf.Tensor;
  b: tf.Tensor;
  bias?: tf.Tensor;
}

/** [M, K] x [K, N] (+ [N]) as stored for the transpose variant; deterministic values. */
function operands(m: number, k: number, n: number, transposeA: boolean, transposeB: boolean, bias: boolean) {
  const seed = m * 1000 + k * 10 + n;
  return (): Operands => ({
    a: tf.tensor(values(m * k, seed), transposeA ? [k, m] : [m, k]),
    b: tf.tensor(values(k * n, seed + 1), transposeB ? [n, k] : [k, n]),
    bias: bias ? tf.tensor(values(n, seed + 2), [n]) : undefined,
  });
}

function cpuReference(o: Operands, transposeA: boolean, transposeB: boolean): tf.Tensor {
  const c = tf.matMul(o.a, o.b, transposeA, transposeB);
  return o.bias ? tf.add(c, o.bias) : c;
}

const SIZES: Array<[number, number, number]> = [
  [1, 1, 1],
  [1, 37, 5],
  [5, 3, 1],
  [9, 17, 13], // one past two 4-row tiles, 17 = 4 steps of 4 + a tail, N one past 3 vec4 columns
  [130, 200, 67],
  [64, 16, 64], // exact tiles
  [7, 6, 129],
];
const VARIANTS: Array<[boolean, boolean]> = [
  [false, false],
  [false, true],
  [true, false],
  [true, true],
];

describe.skipIf(skipReason !== undefined)('registerMatMul (WGSL) against cpu', () => {
  for (const tile of REGISTER_TILES) {
    for (const [transposeA, transposeB] of VARIANTS) {
      it(`${tile.rows}x${tile.cols} tile, transposeA=${transposeA}, transposeB=${transposeB}, ± bias`, async () => {
        for (const bias of [false, true]) {
          for (const [m, k, n] of SIZES) {
            const inputs = operands(m, k, n, transposeA, transposeB, bias);
            const [ref] = await runOn('cpu', () => [cpuReference(inputs(), transposeA, transposeB)]);
            const [got] = await runOn('webgpu', () => {
              const { a, b, bias } = inputs();
              const out = registerMatMul(a, b, { transposeA, transposeB, bias, tile });
              expect(out.shape).toEqual([m, n]);
              return [out];
            });
            expect(worstError(got!, ref!, ATOL, RTOL), `${m}x${k}x${n} bias=${bias}`).toBeLessThanOrEqual(1);
          }
        }
      });
    }
  }

  it('rejects shapes that do not multiply and biases of the wrong size', async () => {
    await runOn('webgpu', () => {
      expect(() => registerMatMul(tf.zeros([4, 5]), tf.zeros([6, 7]))).toThrow(/do not multiply/);
      expect(() => registerMatMul(tf.zeros([4, 5]), tf.zeros([5, 7]), { bias: tf.zeros([6]) })).toThrow(/bias/);
      return [];
    });
  });
});

/**
 * runOn('webgpu', fn) for matMulAuto: the measurement it schedules holds tensors of its own
 * while it runs, so the leak check waits for it, and the read-backs counted are fn's and the
 * measurement's together.
 */
async function runSettled(fn: () => tf.Tensor[]): Promise<{ outs: Float32Array[]; readbacks: number }> {
  await initBackend('webgpu', { logger: quietLogger });
  const before = tf.memory().numTensors;
  const counts = gpuWorkCounts();
  const outs = tf.tidy(fn);
  const arrays = await Promise.all(outs.map(async (t) => Float32Array.from(await t.data())));
  tf.dispose(outs);
  await settleMatMulChoices();
  const readbacks = gpuWorkBetween(counts, gpuWorkCounts()).readbacks;
  if (tf.memory().numTensors !== before) throw new Error(`webgpu: ${tf.memory().numTensors - before} tensors leaked`);
  return { outs: arrays, readbacks };
}

describe.skipIf(skipReason !== undefined)('matMulAuto: per-shape choice by measurement', () => {
  const saved = process.env.ZERORING_WEBGPU_MATMUL;
  afterEach(() => {
    if (saved === undefined) delete process.env.ZERORING_WEBGPU_MATMUL;
    else process.env.ZERORING_WEBGPU_MATMUL = saved;
  });

  it('matches cpu before and after measuring, records every candidate, reads nothing back', async () => {
    delete process.env.ZERORING_WEBGPU_MATMUL;
    const cases: Array<[number, number, number, boolean, boolean, boolean]> = [
      [70, 33, 45, false, false, true],
      [70, 45, 33, false, true, false],
      [33, 70, 45, true, false, false],
    ];
    for (const [m, k, n, transposeA, transposeB, bias] of cases) {
      const inputs = operands(m, k, n, transposeA, transposeB, bias);
      const [ref] = await runOn('cpu', () => [cpuReference(inputs(), transposeA, transposeB)]);
      const run = () => {
        const { a, b, bias } = inputs();
        return [matMulAuto(a, b, { transposeA, transposeB, bias, tfjsTransposeBFirst: transposeB })];
      };
      const first = await runSettled(run);
      expect(worstError(first.outs[0]!, ref!, ATOL, RTOL), 'first call (tfjs)').toBeLessThanOrEqual(1);
      // The one read-back is the result's: measuring added none.
      expect(first.readbacks, 'read-backs of the call and the measurement').toBe(1);
      const [again] = await runOn('webgpu', run);
      expect(worstError(again!, ref!, ATOL, RTOL), 'after the choice').toBeLessThanOrEqual(1);
    }
    const table = matMulChoices();
    let measured = 0;
    for (const [m, k, n, transposeA, transposeB, bias] of cases) {
      const row = table.find((r) => r.m === m && r.k === k && r.n === n && r.transposeA === transposeA);
      expect(row, `${m}x${k}x${n}`).toBeDefined();
      expect(row!.transposeB).toBe(transposeB);
      expect(row!.bias).toBe(bias);
      // A machine too loaded to time a shape cleanly keeps tfjs for it, saying why.
      if (row!.error !== undefined) {
        expect(row!.choice).toBe('tfjs');
        continue;
      }
      measured += 1;
      expect(Object.keys(row!.ms).sort()).toEqual(['register4x4', 'tfjs']);
      for (const ms of Object.values(row!.ms)) expect(ms).toBeGreaterThan(0);
      expect(row!.ms[row!.choice]).toBe(Math.min(...Object.values(row!.ms)));
    }
    // Under heavy load every shape may fall back; a quiet machine times them all.
    if (measured === 0) console.warn('matMulAuto: no shape timed cleanly on this loaded machine; all kept tfjs');
  });

  it('ZERORING_WEBGPU_MATMUL forces tfjs or the register tile, without measuring', async () => {
    const inputs = operands(21, 19, 23, false, false, true);
    const [ref] = await runOn('cpu', () => [cpuReference(inputs(), false, false)]);
    let measured = 0;
    for (const mode of ['tfjs', 'own']) {
      process.env.ZERORING_WEBGPU_MATMUL = mode;
      let dispatches = 0;
      const [got] = await runOn('webgpu', () => {
        const { a, b, bias } = inputs();
        measured = matMulChoices().length;
        const before = gpuWorkCounts();
        const out = matMulAuto(a, b, { bias });
        dispatches = gpuWorkBetween(before, gpuWorkCounts()).dispatches;
        return [out];
      });
      expect(worstError(got!, ref!, ATOL, RTOL), mode).toBeLessThanOrEqual(1);
      expect(dispatches, mode).toBe(1);
    }
    await settleMatMulChoices();
    process.env.ZERORING_WEBGPU_MATMUL = 'fast';
    await runOn('webgpu', () => {
      expect(matMulChoices().length, 'no shape measured when forced').toBe(measured);
      expect(() => matMulAuto(tf.zeros([2, 2]), tf.zeros([2, 2]))).toThrow(/tfjs, own or auto/);
      return [];
    });
  });
});
