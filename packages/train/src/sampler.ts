// Which training windows the run reads, and in what order. Everything here is a pure function of
// the seed and a position, with no RNG state to save: a resumed run reads exactly what an
// uninterrupted one would, at any world size.

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

/**
 * The run's stream of training windows: position p is window perm_e[p mod n] of epoch
 * e = floor(p / n), each epoch a fresh seeded permutation of the n windows. A step reads the
 * positions [step·G, (step+1)·G) for a global batch of G windows, and each rank a contiguous
 * range of those; so which windows a step trains depends on the step and G only, never on the
 * world size or on how the step is split over ranks and micro-batches, and every window of an
 * epoch is read exactly once however often the world size changes.
 */
export class WindowStream {
  private cached?: { epoch: number; perm: Int32Array };

  constructor(
    readonly numWindows: number,
    readonly seed: number,
  ) {
    if (!Number.isInteger(numWindows) || numWindows < 1)
      throw new SamplerError(`numWindows ${numWindows} is invalid, expected an integer >= 1`);
  }

  /** Epoch that stream position `position` falls in. */
  epochOf(position: number): number {
    return Math.floor(position / this.numWindows);
  }

  /** The window indices at stream positions start .. start+count-1. */
  windows(start: number, count: number): Int32Array {
    if (!Number.isSafeInteger(start) || !Number.isInteger(count) || start < 0 || count < 0) {
      throw new SamplerError(`stream range ${start}+${count} is invalid, expected integers >= 0`);
    }
    const out = new Int32Array(count);
    for (let q = 0; q < count; q++) {
      const p = start + q;
      out[q] = this.epochPermutation(this.epochOf(p))[p % this.numWindows];
    }
    return out;
  }

  private epochPermutation(epoch: number): Int32Array {
    if (this.cached?.epoch !== epoch)
      this.cached = { epoch, perm: permutation(this.numWindows, mixSeed(this.seed, epoch)) };
    return this.cached.perm;
  }
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

/**
 * torch.utils.data.DistributedSampler(shuffle=True) over the window stream: at step s the W ranks
 * read stream positions [s·W·b, (s+1)·W·b), rank r the b from s·W·b + r·b. So ranks never share a
 * window within an epoch, every window is read once an epoch, and the windows of one step are the
 * set a single process with batch W·b reads at that step, which makes N-rank DDP comparable with
 * one process.
 */
export class DistributedSampler {
  readonly batchSize: number;
  readonly rank: number;
  readonly worldSize: number;
  private readonly stream: WindowStream;

  constructor(opts: SamplerOptions) {
    const { numWindows, batchSize, rank = 0, worldSize = 1, seed } = opts;
    if (!Number.isInteger(worldSize) || worldSize < 1)
      throw new SamplerError(`worldSize ${worldSize} is invalid, expected an integer >= 1`);
    if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize)
      throw new SamplerError(`rank ${rank} is invalid, expected an integer in [0, ${worldSize - 1}]`);
    if (!Number.isInteger(batchSize) || batchSize < 1)
      throw new SamplerError(`batchSize ${batchSize} is invalid, expected an integer >= 1`);
    this.batchSize = batchSize;
    this.rank = rank;
    this.worldSize = worldSize;
    this.stream = new WindowStream(numWindows, seed);
  }

  /** Epoch that step `step` starts in. */
  epochOf(step: number): number {
    return this.stream.epochOf(step * this.batchSize * this.worldSize);
  }

  /** The window indices this rank reads at `step` (0-based). */
  indices(step: number): Int32Array {
    return this.stepWindows(step, this.rank * this.batchSize, this.batchSize);
  }

  /**
   * Windows `offset .. offset+count-1` of the W·b windows all ranks read together at `step`, for
   * ranks that split a step unevenly (batch-balance.ts): the step still reads the same windows.
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
    return this.stream.windows(step * perStep + offset, count);
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
