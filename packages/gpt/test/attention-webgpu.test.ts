// causalSelfAttention on webgpu (the FlashAttention programs of @zeroring/backend, as one op with
// a custom gradient) against the same op on cpu (the JavaScript kernel), value and gradient
// through tf.grads, at awkward sizes; and the point of those programs: no [B, H, T, T] tensor is
// ever allocated on the GPU. Tolerance as in the backend's kernel test: 1e-5 relative plus an
// absolute 2e-5 (float32 sums over up to T keys, taken in another order than cpu's).
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, type BackendName } from '@zeroring/backend';
import { Rng } from '@zeroring/core';
import { describe, expect, it } from 'vitest';
import { attentionTfOps, causalSelfAttention, type AttentionShape } from '../src/attention.ts';
import { webgpuSkipReason } from '../../../tests/fixtures/webgpu.ts';

const skipReason = await webgpuSkipReason('webgpu attention op tests');

interface BufferPool {
  numBytesAllocated: number;
  freeBuffers: Map<string, unknown>;
  usedBuffers: Map<string, unknown>;
}

const quiet = { info() {}, warn() {}, debug() {} };
const ATOL = 2e-5;
const RTOL = 1e-5;

function randn(shape: number[], seed: number, std = 1): tf.Tensor {
  const rng = new Rng(seed);
  return tf.tensor(
    Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng.normal() * std),
    shape,
  );
}

/** y and dL/dqkv of L = sum(y * dy) for y = causalSelfAttention(qkv), computed on `backend`. */
async function valueAndGrad(backend: BackendName, shape: AttentionShape, C: number): Promise<Float32Array[]> {
  await initBackend(backend, { logger: quiet });
  const before = tf.memory().numTensors;
  const outs = tf.tidy(() => {
    const qkv = randn([shape.B * shape.T, 3 * C], shape.T + shape.H, 1.5);
    const dy = randn([shape.B * shape.T, C], 99);
    const f = (x: tf.Tensor) => causalSelfAttention(x as tf.Tensor2D, shape);
    const [g] = tf.grads((x: tf.Tensor) => tf.sum(tf.mul(f(x), dy)))([qkv]);
    return [f(qkv), g!];
  });
  const arrays = await Promise.all(outs.map(async (t) => Float32Array.from(await t.data())));
  tf.dispose(outs);
  expect(tf.memory().numTensors, `${backend} leaks no tensors`).toBe(before);
  return arrays;
}

function worstError(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(a[i]!)) return Infinity;
    worst = Math.max(worst, Math.abs(a[i]! - b[i]!) / (ATOL + RTOL * Math.abs(b[i]!)));
  }
  return worst;
}

const CASES: Array<AttentionShape & { hs: number }> = [
  { B: 1, T: 1, H: 2, hs: 32 },
  { B: 3, T: 7, H: 1, hs: 64 },
  { B: 1, T: 33, H: 4, hs: 32 },
  { B: 3, T: 64, H: 6, hs: 64 },
  { B: 3, T: 100, H: 3, hs: 32 },
];

describe('causalSelfAttention on webgpu', () => {
  for (const { hs, ...shape } of CASES) {
    it.skipIf(skipReason !== undefined)(`B=${shape.B} T=${shape.T} H=${shape.H} hs=${hs} matches cpu`, async () => {
      const C = shape.H * hs;
      const [yRef, gRef] = await valueAndGrad('cpu', shape, C);
      const [y, g] = await valueAndGrad('webgpu', shape, C);
      expect(worstError(y!, yRef!), 'y').toBeLessThanOrEqual(1);
      expect(worstError(g!, gRef!), 'dqkv').toBeLessThanOrEqual(1);
    });
  }

  it.skipIf(skipReason !== undefined)('allocates no [B, H, T, T] buffer, where the tfjs-ops form does', async () => {
    await initBackend('webgpu', { logger: quiet });
    // T large next to C, so that the scores of one head outweigh every [B*T, C]-sized buffer.
    const shape = { B: 1, T: 1000, H: 1 };
    const C = 32;
    const scoreBytes = shape.B * shape.H * shape.T * shape.T * 4;
    const qkv = randn([shape.B * shape.T, 3 * C], 5);
    const dy = randn([shape.B * shape.T, C], 6);
    // tfjs-backend-webgpu keeps every buffer it creates in a pool keyed by size and usage.
    const pool = (tf.backend() as unknown as { bufferManager: BufferPool }).bufferManager;
    const sizes = (): Set<string> => new Set([...pool.freeBuffers.keys(), ...pool.usedBuffers.keys()]);
    /** Bytes newly allocated over fwd + bwd, and the largest buffer of a size the pool did not have. */
    const allocations = async (f: (x: tf.Tensor2D) => tf.Tensor2D): Promise<{ total: number; largest: number }> => {
      const bytes = pool.numBytesAllocated;
      const known = sizes();
      const g = tf.tidy(() => tf.grad((x: tf.Tensor) => tf.sum(tf.mul(f(x as tf.Tensor2D), dy)))(qkv));
      await g.data();
      g.dispose();
      const fresh = [...sizes()].filter((k) => !known.has(k)).map((k) => Number(k.split('_')[0]));
      return { total: pool.numBytesAllocated - bytes, largest: Math.max(0, ...fresh) };
    };
    const flash = await allocations((x) => causalSelfAttention(x, shape));
    const tfOps = await allocations((x) => attentionTfOps(x, shape));
    expect(flash.largest).toBeLessThan(shape.T * shape.T * 4);
    expect(flash.total).toBeLessThan(scoreBytes);
    expect(tfOps.largest).toBeGreaterThanOrEqual(scoreBytes);
    tf.dispose([qkv, dy]);
  });
});
