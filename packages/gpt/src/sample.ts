// Autoregressive sampling: run the blocks on the last T tokens, sample the next one, repeat.
//
// Parameters come in as a NamedTensors map (e.g. a strategy's fullParams() uploaded, or a
// checkpoint), so sampling needs no trainer. Top-k and temperature work on the host: the last
// row of logits is only V numbers. The row is read with the asynchronous data(): a GPU backend
// cannot read synchronously in Node (tfjs-backend-webgpu's readSync needs OffscreenCanvas).
import * as tf from '@tensorflow/tfjs-core';
import { forwardAll, type GPTModel, type NamedTensors } from './model.ts';
import { Rng } from '@zeroring/core';

export interface GenerateOptions {
  maxNewTokens: number;
  /** Softmax temperature; 0 means greedy (argmax). Default 1. */
  temperature?: number;
  /** Keep only the k most likely tokens before sampling (default: all). */
  topK?: number;
  seed?: number;
}

/** Returns prompt followed by maxNewTokens generated token ids. */
export async function generate(
  model: GPTModel,
  params: NamedTensors,
  promptIds: ArrayLike<number>,
  options: GenerateOptions,
): Promise<Int32Array> {
  const { maxNewTokens, temperature = 1, topK, seed = 0 } = options;
  const { blockSize, vocabSize: V } = model.config;
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 0)
    throw new RangeError(`maxNewTokens must be a non-negative integer, got ${maxNewTokens}`);
  if (!(temperature >= 0)) throw new RangeError(`temperature must be >= 0, got ${temperature}`);
  if (topK !== undefined && (!Number.isInteger(topK) || topK < 1))
    throw new RangeError(`topK must be a positive integer, got ${topK}`);
  if (promptIds.length === 0) throw new RangeError('prompt must contain at least one token');

  const rng = new Rng(seed);
  const ids = Array.from(promptIds);
  for (let step = 0; step < maxNewTokens; step++) {
    const context = ids.slice(-blockSize);
    const logits = tf.tidy(() => {
      const out = forwardAll(model, params, tf.tensor2d(context, [1, context.length], 'int32'));
      return tf.slice(out, [0, context.length - 1, 0], [1, 1, V]);
    });
    const row = (await logits.data()) as Float32Array;
    logits.dispose();
    ids.push(pick(row, temperature, topK, rng));
  }
  return Int32Array.from(ids);
}

function pick(logits: Float32Array, temperature: number, topK: number | undefined, rng: Rng): number {
  const V = logits.length;
  if (temperature === 0) {
    let best = 0;
    for (let i = 1; i < V; i++) if (logits[i]! > logits[best]!) best = i;
    return best;
  }
  let cutoff = -Infinity;
  if (topK !== undefined && topK < V) cutoff = Float32Array.from(logits).sort().reverse()[topK - 1]!;
  let max = -Infinity;
  for (let i = 0; i < V; i++) if (logits[i]! >= cutoff) max = Math.max(max, logits[i]!);
  const probs = new Float64Array(V);
  let total = 0;
  for (let i = 0; i < V; i++) {
    if (logits[i]! >= cutoff) total += probs[i] = Math.exp((logits[i]! - max) / temperature);
  }
  let r = rng.next() * total;
  for (let i = 0; i < V; i++) {
    r -= probs[i]!;
    if (r < 0 && probs[i]! > 0) return i;
  }
  // Rounding left r just above 0: take the last candidate.
  for (let i = V - 1; i >= 0; i--) if (probs[i]! > 0) return i;
  return 0;
}
