// DistributedSampler: which training windows each rank reads at each step.
//
// Like torch.utils.data.DistributedSampler(shuffle=True, drop_last=True): every epoch is a
// seeded permutation of all window indices; rank r takes positions r, r+W, r+2W, ... of it, so
// ranks never share a window within an epoch, and the next epoch reshuffles with a new seed.
// The sampler is a pure function of (seed, step): resuming at step s reads exactly what the
// uninterrupted run would have read, with no RNG state to save. With W ranks of batch b, the
// windows of one step are the same set a single process with batch W*b reads at that step, which
// is what makes N-rank DDP comparable with one process.

import { mulberry32 } from '@zeroring/core';

export class SamplerError extends Error {
  override name = 'SamplerError';
}

/** A 32-bit seed for a sub-stream (e.g. one epoch), mixed so nearby inputs give unrelated streams. */
export function mixSeed(seed: number, ...parts: number[]): number {
  let h = (Math.trunc(seed) ^ 0x9e3779b9) >>> 0;
  for (const p of parts) {
    h = Math.imul(h ^ (Math.trunc(p) >>> 0), 0x85ebca6b) >>> 0;
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
    h = (h ^ (h >>> 16)) >>> 0;
  }
  return h;
}

/** Seeded Fisher–Yates permutation of 0..n-1. */
export function permutation(n: number, seed: number): Int32Array {
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = i;
  const rand = mulberry32(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    const t = out[i];
    out[i] = out[j];
    out[j] = t;
  }
  return out;
}

export interface SamplerOptions {
  /** Number of candidate windows (indices 0..numWindows-1). */
  numWindows: number;
  /** Windows per rank per step. */
  batchSize: number;
  rank?: number;
  worldSize?: number;
  seed: number;
}

export class DistributedSampler {
  readonly numWindows: number;
  readonly batchSize: number;
  readonly rank: number;
  readonly worldSize: number;
  readonly seed: number;
  /** Windows each rank reads per epoch (drop_last: the remainder of numWindows / W is skipped). */
  readonly perRankPerEpoch: number;
  private cached?: { epoch: number; perm: Int32Array };

  constructor(opts: SamplerOptions) {
    const { numWindows, batchSize, rank = 0, worldSize = 1, seed } = opts;
    if (!Number.isInteger(worldSize) || worldSize < 1)
      throw new SamplerError(`worldSize ${worldSize} is invalid, expected an integer >= 1`);
    if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize)
      throw new SamplerError(`rank ${rank} is invalid, expected an integer in [0, ${worldSize - 1}]`);
    if (!Number.isInteger(batchSize) || batchSize < 1)
      throw new SamplerError(`batchSize ${batchSize} is invalid, expected an integer >= 1`);
    if (!Number.isInteger(numWindows) || numWindows < worldSize)
      throw new SamplerError(`numWindows ${numWindows} is too small, expected at least worldSize (${worldSize})`);
    this.numWindows = numWindows;
    this.batchSize = batchSize;
    this.rank = rank;
    this.worldSize = worldSize;
    this.seed = seed;
    this.perRankPerEpoch = Math.floor(numWindows / worldSize);
  }

  /** Epoch that step `step` starts in. */
  epochOf(step: number): number {
    return Math.floor((step * this.batchSize) / this.perRankPerEpoch);
  }

  /** The window indices this rank reads at `step` (0-based). */
  indices(step: number): Int32Array {
    return this.stepWindows(step, this.rank * this.batchSize, this.batchSize);
  }

  /**
   * Windows `offset .. offset+count-1` of the W·b windows all ranks read together at `step`,
   * numbered rank by rank (rank r's even share is r·b .. r·b+b-1, what indices(step) gives it).
   * Ranks that split a step's windows unevenly (batch-balance.ts) each take a contiguous range,
   * so the step still reads exactly the same set of windows.
   */
  stepWindows(step: number, offset: number, count: number): Int32Array {
    if (!Number.isInteger(step) || step < 0)
      throw new SamplerError(`step ${step} is invalid, expected an integer >= 0`);
    const perStep = this.batchSize * this.worldSize;
    if (!Number.isInteger(offset) || !Number.isInteger(count) || offset < 0 || count < 0 || offset + count > perStep) {
      throw new SamplerError(
        `windows ${offset}..${offset + count - 1} of a step are invalid, expected a range within 0..${perStep - 1}`,
      );
    }
    const out = new Int32Array(count);
    for (let q = 0; q < count; q++) {
      const rank = Math.floor((offset + q) / this.batchSize);
      const i = step * this.batchSize + ((offset + q) % this.batchSize);
      const epoch = Math.floor(i / this.perRankPerEpoch);
      const k = i % this.perRankPerEpoch;
      out[q] = this.epochPermutation(epoch)[rank + k * this.worldSize];
    }
    return out;
  }

  private epochPermutation(epoch: number): Int32Array {
    if (this.cached?.epoch !== epoch)
      this.cached = { epoch, perm: permutation(this.numWindows, mixSeed(this.seed, epoch)) };
    return this.cached.perm;
  }
}

/** A fixed, seeded choice of `count` windows (e.g. the validation set), the same on every call. */
export function fixedWindows(numWindows: number, count: number, seed: number): Int32Array {
  if (numWindows < 1)
    throw new SamplerError(`no windows to choose from (numWindows ${numWindows}), expected at least 1`);
  const rand = mulberry32(mixSeed(seed, 0x7a1));
  const out = new Int32Array(count);
  for (let i = 0; i < count; i++) out[i] = Math.floor(rand() * numWindows);
  return out;
}
