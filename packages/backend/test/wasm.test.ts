// The wasm backend against cpu: matmul, the UnsortedSegmentSum kernel this package adds, and
// the gradients of every op a GPT training step uses.
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { gptStep } from './gpt-ops.ts';
import { runOn, values, worstError } from './helpers.ts';

async function compare(fn: () => tf.Tensor[], atol = 1e-5, rtol = 1e-4): Promise<Float32Array[]> {
  const ref = await runOn('cpu', fn);
  const got = await runOn('wasm', fn);
  expect(got.length).toBe(ref.length);
  got.forEach((g, i) => expect(worstError(g, ref[i], atol, rtol), `output ${i}`).toBeLessThanOrEqual(1));
  return got;
}

describe('wasm backend', () => {
  it('runs on wasm with SIMD', async () => {
    await runOn('wasm', () => []);
    expect(tf.getBackend()).toBe('wasm');
    expect(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT')).toBe(true);
  });

  it('matmul and batched matmul with transposes match cpu', async () => {
    await compare(() => [
      tf.matMul(tf.tensor2d(values(64 * 48, 1), [64, 48]), tf.tensor2d(values(48 * 32, 2), [48, 32])),
      tf.matMul(
        tf.tensor3d(values(3 * 5 * 7, 3), [3, 5, 7]),
        tf.tensor3d(values(3 * 9 * 7, 4), [3, 9, 7]),
        false,
        true,
      ),
    ]);
  });

  it('BatchMatMul in every transpose/batch layout (XNNPACK routing) matches cpu, shapes included', async () => {
    const t = (shape: number[], seed: number) =>
      tf.tensor(
        values(
          shape.reduce((x, y) => x * y, 1),
          seed,
        ),
        shape,
      );
    const got = await compare(() => {
      const outs = [
        tf.matMul(t([6, 5], 1), t([5, 7], 2)), // NN, batch 1: stock XNNPACK path
        tf.matMul(t([6, 5], 1), t([7, 5], 3), false, true), // NT
        tf.matMul(t([5, 6], 4), t([5, 7], 2), true, false), // TN
        tf.matMul(t([5, 6], 4), t([7, 5], 3), true, true), // TT
        tf.matMul(t([2, 3, 6, 5], 5), t([5, 7], 2)), // batch folded into rows
        tf.matMul(t([2, 3, 5, 6], 6), t([7, 5], 3), true, true), // folded + both transposed
        tf.matMul(t([6, 5], 1), t([1, 7, 5], 7), false, true), // b with a batch of 1
        tf.matMul(t([4, 6, 5], 8), t([4, 7, 5], 9), false, true), // both batched: stock kernel
      ];
      return [...outs, tf.tensor1d(outs.flatMap((o) => o.shape))];
    });
    expect(Array.from(got.at(-1)!)).toEqual([6, 7, 6, 7, 6, 7, 6, 7, 2, 3, 6, 7, 2, 3, 6, 7, 1, 6, 7, 4, 6, 7]);
  });

  it('Slice (in place on the heap) matches cpu: contiguous, strided ranks 2-5, int32, unstack/split', async () => {
    const t = (shape: number[], seed: number) =>
      tf.tensor(
        values(
          shape.reduce((x, y) => x * y, 1),
          seed,
        ),
        shape,
      );
    await compare(() => [
      tf.slice(t([1000], 1), [100], [37]),
      tf.slice(t([6, 10], 2), [2, 0], [3, 10]), // contiguous rows
      tf.slice(t([6, 10], 2), [1, 3], [4, 5]),
      tf.slice(t([4, 5, 6], 3), [1, 2, 1], [2, 3, 4]),
      tf.slice(t([3, 4, 5, 6], 4), [1, 0, 2, 3], [2, 4, 2, 3]),
      tf.slice(t([2, 3, 4, 5, 6], 5), [1, 1, 0, 2, 1], [1, 2, 4, 3, 5]), // rank 5
      tf.cast(
        tf.slice(
          tf.tensor2d(
            [
              [1, 2, 3],
              [4, 5, 6],
            ],
            [2, 3],
            'int32',
          ),
          [0, 1],
          [2, 2],
        ),
        'float32',
      ),
      ...tf.unstack(t([3, 4, 5], 6)),
      ...tf.split(t([8, 9], 7), 3, 1),
    ]);
  });

  it('Identity (tf.clone) shares the heap block, counting references; each handle outlives the other', async () => {
    await runOn('wasm', () => []);
    const refs = (t: tf.Tensor): number => tf.backend().refCount(t.dataId);
    const x = tf.tensor2d(values(64 * 48, 11), [64, 48]);
    const want = Array.from(x.dataSync());
    const y = tf.clone(x);
    expect(y.dataId).toBe(x.dataId); // the stock kernel copies into a new block
    expect(refs(y)).toBe(2);
    x.dispose();
    expect(refs(y)).toBe(1);
    expect(Array.from(y.dataSync())).toEqual(want);
    const z = tf.clone(y);
    y.dispose();
    expect(Array.from(z.dataSync())).toEqual(want);
    z.dispose();
    tf.tidy(() => {
      expect(Array.from(tf.clone(tf.tensor1d([1, 2, 3], 'int32')).dataSync())).toEqual([1, 2, 3]);
      expect(Array.from(tf.clone(tf.tensor1d(['a', 'b'], 'string')).dataSync() as unknown as string[])).toEqual([
        'a',
        'b',
      ]);
    });
  });

  it('UnsortedSegmentSum matches cpu: repeated ids, ids out of range, int32', async () => {
    const got = await compare(() => [
      tf.unsortedSegmentSum(tf.tensor2d(values(6 * 4, 5), [6, 4]), tf.tensor1d([2, 0, 2, 2, -1, 7], 'int32'), 3),
      tf.cast(
        tf.unsortedSegmentSum(tf.tensor1d([1, 2, 3, 4, 5], 'int32'), tf.tensor1d([1, 1, 0, 4, 1], 'int32'), 5),
        'float32',
      ),
    ]);
    expect(Array.from(got[1])).toEqual([3, 8, 0, 0, 4]);
  });

  it('UnsortedSegmentSum with rank-2 ids sums whole rows (cpu cannot: checked by hand)', async () => {
    // tfjs's cpu kernel mis-broadcasts ids of rank > 1, so the reference is computed here.
    const x = values(2 * 3 * 5, 6);
    const ids = [1, 1, 0, 3, 1, 0];
    const expected = new Float32Array(4 * 5);
    ids.forEach((id, i) => {
      for (let j = 0; j < 5; j++) expected[id * 5 + j] += x[i * 5 + j];
    });
    const [got] = await runOn('wasm', () => [
      // The op's typing says rank 1; the kernel contract (and TensorFlow's) allows any prefix.
      tf.unsortedSegmentSum(tf.tensor3d(x, [2, 3, 5]), tf.tensor2d(ids, [2, 3], 'int32') as unknown as tf.Tensor1D, 4),
    ]);
    expect(worstError(got, expected, 1e-6, 1e-6)).toBeLessThanOrEqual(1);
  });

  it('gather gradient (embedding lookup) matches cpu', async () => {
    const got = await compare(() => {
      const table = tf.tensor2d(values(10 * 6, 7), [10, 6]);
      const ids = tf.tensor1d([1, 4, 1, 9, 1, 0], 'int32');
      const up = tf.tensor2d(values(6 * 6, 8), [6, 6]);
      return [tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.gather(t, ids), up)))(table)];
    });
    expect(got[0].slice(2 * 6, 3 * 6).every((v) => v === 0)).toBe(true); // row 2 never gathered
  });

  it('softmax, logSoftmax, erf, tanh, pow, moments, where, maximum gradients match cpu', async () => {
    await compare(() => {
      const x = tf.tensor2d(values(4 * 9, 9, 2), [4, 9]);
      const up = tf.tensor2d(values(4 * 9, 10), [4, 9]);
      const positive = tf.greater(tf.tensor2d(values(4 * 9, 9, 2), [4, 9]), 0);
      const g = (f: (t: tf.Tensor) => tf.Tensor) => tf.grad((t: tf.Tensor) => tf.sum(tf.mul(f(t), up)))(x);
      return [
        g((t) => tf.softmax(t)),
        g((t) => tf.logSoftmax(t)),
        g((t) => tf.erf(t)),
        g((t) => tf.tanh(t)),
        g((t) => tf.pow(t, 3)),
        g((t) => {
          const { mean, variance } = tf.moments(t, -1, true);
          return tf.mul(tf.sub(t, mean), tf.rsqrt(tf.add(variance, 1e-5)));
        }),
        // The mask comes from a tensor the tape does not watch: tfjs has no gradient for
        // comparison ops and fails when backprop reaches one (on every backend).
        g((t) => tf.where(positive, t, tf.mul(t, 0.1))),
        g((t) => tf.maximum(t, tf.mul(t, 0.2))),
      ];
    });
  });

  it('a whole one-layer GPT step (loss and every gradient) matches cpu, GELU tanh and erf', async () => {
    const tanh = await compare(() => gptStep('tanh'), 1e-5, 1e-3);
    expect(tanh[0][0]).toBeGreaterThan(1); // cross-entropy over 11 classes at init
    await compare(() => gptStep('erf'), 1e-5, 1e-3);
  });
});
