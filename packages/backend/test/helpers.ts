// Runs the same computation on two backends and hands back plain arrays to compare.
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, type BackendName } from '../src/index.ts';
import type { BackendLogger } from '../src/logger.ts';

export const quietLogger: BackendLogger = { info() {}, warn() {}, debug() {} };

/** Deterministic pseudo-random values (no tf RNG, so both backends get identical inputs). */
export function values(n: number, seed: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = ((s >>> 0) / 0xffffffff - 0.5) * 2 * scale;
  }
  return out;
}

/** Runs fn on `name`, reads every output asynchronously (webgpu has no readSync), frees it all. */
export async function runOn(name: BackendName, fn: () => tf.Tensor[]): Promise<Float32Array[]> {
  await initBackend(name, { logger: quietLogger });
  const before = tf.memory().numTensors;
  const outs = tf.tidy(fn);
  const arrays = await Promise.all(outs.map(async (t) => Float32Array.from(await t.data())));
  tf.dispose(outs);
  if (tf.memory().numTensors !== before) throw new Error(`${name}: ${tf.memory().numTensors - before} tensors leaked`);
  return arrays;
}

/** Largest |a-b| / (atol + rtol·|b|) over all elements; ≤ 1 means close. */
export function worstError(a: Float32Array, b: Float32Array, atol: number, rtol: number): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(a[i]) || !Number.isFinite(b[i])) return Infinity;
    worst = Math.max(worst, Math.abs(a[i] - b[i]) / (atol + rtol * Math.abs(b[i])));
  }
  return worst;
}
