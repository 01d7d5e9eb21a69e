// The FlashAttention programs (webgpu-kernels/attention.ts) against plain tfjs ops on cpu: y from
// the forward program, and dqkv from the two backward programs against tfjs autodiff of the same
// reference, on random data at awkward sizes (T = 1, or not a multiple of the 32-row tiles; one to
// six heads; head sizes 32 and 64, whose inner tiles differ, and 4). Inputs are scaled so that
// scores spread over several units and the running max moves from tile to tile.
// Tolerance: 1e-5 relative plus an absolute 2e-5, about a hundred float32 ulps of the O(1) values
// here: each output is a float32 sum over up to T keys of products summed over hs, taken in a
// different order than cpu's matmuls and softmax.
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import {
  attentionTiles,
  flashAttentionBackward,
  flashAttentionForward,
  gpuWorkBetween,
  gpuWorkCounts,
  initBackend,
} from '../src/index.ts';
import { quietLogger, runOn, values, worstError } from './helpers.ts';
import { webgpuSkipReason } from '../../../tests/fixtures/webgpu.ts';

const skipReason = await webgpuSkipReason('webgpu attention tests');

const ATOL = 2e-5;
const RTOL = 1e-5;

interface Case {
  B: number;
  T: number;
  H: number;
  hs: number;
}

/** Causal attention by tfjs ops: per head softmax(q k^T / sqrt(hs) + mask) v, heads side by side. */
function reference(qkv: tf.Tensor2D, { B, T, H, hs }: Case): tf.Tensor2D {
  const C = H * hs;
  const heads = (part: number): tf.Tensor3D =>
    tf.reshape(tf.transpose(tf.reshape(tf.slice(qkv, [0, part * C], [B * T, C]), [B, T, H, hs]), [0, 2, 1, 3]), [
      B * H,
      T,
      hs,
    ]);
  const mask = tf.tensor2d(
    Float32Array.from({ length: T * T }, (_, n) => (n % T > Math.floor(n / T) ? -1e9 : 0)),
    [T, T],
  );
  const scores = tf.add(tf.mul(tf.matMul(heads(0), heads(1), false, true), 1 / Math.sqrt(hs)), mask);
  const y = tf.matMul(tf.softmax(scores), heads(2));
  return tf.reshape(tf.transpose(tf.reshape(y, [B, H, T, hs]), [0, 2, 1, 3]), [B * T, C]);
}

function inputs({ B, T, H, hs }: Case, seed: number): { qkv: tf.Tensor2D; dy: tf.Tensor2D } {
  const C = H * hs;
  return {
    qkv: tf.tensor2d(values(B * T * 3 * C, seed, 2.5), [B * T, 3 * C]),
    dy: tf.tensor2d(values(B * T * C, seed + 1), [B * T, C]),
  };
}

const CASES: Case[] = [
  { B: 1, T: 1, H: 1, hs: 32 },
  { B: 3, T: 7, H: 2, hs: 64 },
  { B: 1, T: 33, H: 6, hs: 32 },
  { B: 3, T: 64, H: 4, hs: 32 },
  { B: 1, T: 100, H: 3, hs: 64 },
  { B: 3, T: 100, H: 5, hs: 32 },
  { B: 1, T: 256, H: 1, hs: 64 },
  // The smallest head size the programs take.
  { B: 2, T: 19, H: 3, hs: 4 },
];

describe('webgpu FlashAttention programs', () => {
  it('tiles fit 16 KiB of workgroup memory: 32-row inner tiles for hs 32, 16 for hs 64', () => {
    expect(attentionTiles(32)).toEqual({ hs: 32, rows: 32, tile: 32 });
    expect(attentionTiles(64)).toEqual({ hs: 64, rows: 32, tile: 16 });
    for (const hs of [4, 32, 64, 128, 256])
      expect(2 * attentionTiles(hs).tile * (hs + 1) * 4).toBeLessThanOrEqual(16384);
  });

  for (const c of CASES) {
    it.skipIf(skipReason !== undefined)(`B=${c.B} T=${c.T} H=${c.H} hs=${c.hs}: y and dqkv match cpu`, async () => {
      const seed = 7 * c.T + c.H;
      const [yRef, gRef] = await runOn('cpu', () => {
        const { qkv, dy } = inputs(c, seed);
        const grad = tf.grad((x: tf.Tensor) => tf.sum(tf.mul(reference(x as tf.Tensor2D, c), dy)));
        return [reference(qkv, c), grad(qkv)];
      });
      const [y, g] = await runOn('webgpu', () => {
        const { qkv, dy } = inputs(c, seed);
        const out = flashAttentionForward(qkv, c);
        return [out, flashAttentionBackward(qkv, out, dy, c)];
      });
      expect(worstError(y!, yRef!, ATOL, RTOL), 'y').toBeLessThanOrEqual(1);
      expect(worstError(g!, gRef!, ATOL, RTOL), 'dqkv').toBeLessThanOrEqual(1);
    });
  }

  it.skipIf(skipReason !== undefined)('forward is one dispatch and backward two, with no readback', async () => {
    await initBackend('webgpu', { logger: quietLogger });
    const c = { B: 2, T: 40, H: 2, hs: 32 };
    const { qkv, dy } = inputs(c, 3);
    const before = gpuWorkCounts();
    const y = flashAttentionForward(qkv, c);
    const mid = gpuWorkCounts();
    const g = flashAttentionBackward(qkv, y, dy, c);
    const after = gpuWorkCounts();
    await g.data();
    expect(gpuWorkBetween(before, mid)).toMatchObject({ dispatches: 1, readbacks: 0 });
    expect(gpuWorkBetween(mid, after)).toMatchObject({ dispatches: 2, readbacks: 0 });
    tf.dispose([qkv, dy, y, g]);
  });

  it('rejects a qkv that does not match the shape, and head sizes it does not take', async () => {
    expect(() => flashAttentionForward(tf.zeros([10, 30]) as tf.Tensor2D, { B: 2, T: 4, H: 2 })).toThrow(/match/);
    expect(() => flashAttentionForward(tf.zeros([8, 18]) as tf.Tensor2D, { B: 2, T: 4, H: 2 })).toThrow(/head size 3/);
    expect(() => flashAttentionForward(tf.zeros([4, 384]) as tf.Tensor2D, { B: 1, T: 4, H: 1 })).toThrow(
      /head size 128/,
    );
  });
});
