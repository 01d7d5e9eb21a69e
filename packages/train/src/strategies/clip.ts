// Gradient scaling and clipping by global norm, torch.nn.utils.clip_grad_norm_'s rule: multiply
// by max/(norm+1e-6) when that is below 1. The norm is that of the complete, reduced gradient, so
// it is taken where the gradient is: over device tensors (replicated strategies), or as the sum of
// every rank's squared shard norm (sharded strategies), which is exact because the shards
// partition the gradient and the partition's padding is zero.
import * as tf from '@tensorflow/tfjs-core';
import type { FinishStepOptions } from '../strategy.ts';
import type { ShardComm } from './parts.ts';
import type { IssueQueue } from './issue-queue.ts';

/**
 * Squared global L2 norm of a set of gradients: per-tensor float32 sums read back in one transfer
 * (one device sync, not one per tensor) and added in float64.
 */
export async function globalSquaredNorm(grads: Iterable<tf.Tensor>): Promise<number> {
  const list = [...grads];
  if (list.length === 0) return 0;
  const sums = tf.tidy(() => tf.stack(list.map((g) => tf.sum(tf.square(g)))));
  const values = await sums.data();
  sums.dispose();
  let total = 0;
  for (const v of values) total += v;
  return total;
}

/** torch.nn.utils.clip_grad_norm_: the factor gradients are multiplied by (1 when under the limit). */
export function clipCoefficient(norm: number, maxNorm: number | undefined): number {
  if (!maxNorm || maxNorm <= 0) return 1;
  return Math.min(1, maxNorm / (norm + 1e-6));
}

/** g *= factor in float32, as tf.mul(g, factor) rounds (the factor itself is a float32 scalar). */
export function scaleInPlace(g: Float32Array, factor: number): void {
  const f = Math.fround(factor);
  for (let i = 0; i < g.length; i++) g[i] *= f;
}

/**
 * Scales this rank's gradient shard by opts.gradScale and clips it to opts.maxGradNorm over the
 * whole gradient (one all-reduce of the squared shard norms). Returns the global norm before
 * clipping when clipping was asked for. Collective when clipping over several ranks.
 */
export async function scaleAndClipShard(
  g: Float32Array,
  opts: Pick<FinishStepOptions, 'gradScale' | 'maxGradNorm' | 'squaredNormAcross'>,
  comm: Pick<ShardComm, 'worldSize' | 'allReduce'>,
  queue: IssueQueue,
): Promise<number | undefined> {
  const scale = opts.gradScale ?? 1;
  if (scale !== 1) scaleInPlace(g, scale);
  if (!opts.maxGradNorm || opts.maxGradNorm <= 0) return undefined;
  let sq = 0;
  for (let i = 0; i < g.length; i++) sq += g[i] * g[i];
  const buf = Float32Array.of(sq);
  if (comm.worldSize > 1) await queue.issue(buf, (b) => comm.allReduce(b, { op: 'sum' }));
  const gradNorm = Math.sqrt(opts.squaredNormAcross ? await opts.squaredNormAcross(buf[0]) : buf[0]);
  const coef = clipCoefficient(gradNorm, opts.maxGradNorm);
  if (coef < 1) scaleInPlace(g, coef);
  return gradNorm;
}
