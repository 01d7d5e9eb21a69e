// Splitting each step's global batch across ranks of unequal speed. Synchronous data parallelism
// runs at its slowest rank's pace; but a step's gradient is the same mean over its windows however
// they are divided. BatchBalancer moves windows toward the faster ranks in proportion to measured
// speed, from the figures the per-step metrics all-reduce already carries, so every rank computes
// the same split; hysteresis keeps noise from making it wander.
// Details: docs/internals.md#batch-balance
import { median } from './metrics.ts';

export class BatchSplitError extends Error {
  override name = 'BatchSplitError';
}

/** Check a per-rank split of `total` windows over `worldSize` ranks (each rank at least one). */
export function validateSplit(split: readonly number[], total: number, worldSize: number): number[] {
  const sum = split.reduce((a, b) => a + b, 0);
  if (split.length !== worldSize || split.some((n) => !Number.isInteger(n) || n < 1) || sum !== total) {
    throw new BatchSplitError(
      `batch split [${split.join(', ')}] is invalid, expected ${worldSize} ` +
        `integers >= 1 summing to ${total} (world size x batch size)`,
    );
  }
  return [...split];
}

/**
 * `total` items over ranks in proportion to `weights` (largest remainder; ties to the lower rank),
 * each rank at least one item.
 */
export function proportionalSplit(total: number, weights: readonly number[]): number[] {
  const W = weights.length;
  if (!Number.isInteger(total) || total < W)
    throw new BatchSplitError(`cannot split ${total} windows over ${W} ranks, expected at least one per rank`);
  if (weights.some((w) => !(w > 0) || !Number.isFinite(w)))
    throw new BatchSplitError(`split weights [${weights.join(', ')}] are invalid, expected finite numbers > 0`);
  // One window per rank first, the rest in proportion: no rank can be starved.
  const spare = total - W;
  const sumW = weights.reduce((a, b) => a + b, 0);
  const ideal = weights.map((w) => (spare * w) / sumW);
  const out = ideal.map((x) => 1 + Math.floor(x));
  let left = total - out.reduce((a, b) => a + b, 0);
  const byRemainder = ideal
    .map((x, r) => ({ r, frac: x - Math.floor(x) }))
    .sort((a, b) => b.frac - a.frac || a.r - b.r);
  for (let i = 0; left > 0; i++, left--) out[byRemainder[i % W].r] += 1;
  return out;
}

export interface BatchBalancerOptions {
  /** Windows per step over all ranks (world size × per-rank batch). */
  total: number;
  worldSize: number;
  /** Split to start from; default even. */
  initial?: readonly number[];
  /** Observations (steps) the estimate of each rank's speed takes the median of; default 3. */
  window?: number;
  /** A new split must promise a step at least this much shorter; default 0.03 (3 %). */
  minGain?: number;
}

export class BatchBalancer {
  readonly total: number;
  readonly worldSize: number;
  private readonly window: number;
  private readonly minGain: number;
  private current: number[];
  /** Per rank, the latest per-window times (ms), oldest first. */
  private history: number[][];

  constructor(opts: BatchBalancerOptions) {
    const { total, worldSize } = opts;
    if (!Number.isInteger(worldSize) || worldSize < 1)
      throw new BatchSplitError(`worldSize ${worldSize} is invalid, expected an integer >= 1`);
    this.total = total;
    this.worldSize = worldSize;
    this.window = opts.window ?? 3;
    this.minGain = opts.minGain ?? 0.03;
    if (!Number.isInteger(this.window) || this.window < 1)
      throw new BatchSplitError(`balance window ${this.window} is invalid, expected an integer >= 1`);
    this.current = opts.initial
      ? validateSplit(opts.initial, total, worldSize)
      : proportionalSplit(total, new Array<number>(worldSize).fill(1));
    this.history = Array.from({ length: worldSize }, () => []);
  }

  /** Windows each rank reads at the next step. */
  get split(): readonly number[] {
    return this.current;
  }

  /**
   * One step's work per rank (ms between two synchronisations) under the split that step used.
   * May change `split`; every rank must make the same calls to stay in agreement.
   */
  observe(usedSplit: readonly number[], workMs: readonly number[]): void {
    if (usedSplit.length !== this.worldSize || workMs.length !== this.worldSize) {
      throw new BatchSplitError(
        `observation for ${usedSplit.length} / ${workMs.length} ranks, expected ${this.worldSize}`,
      );
    }
    // A rank that reported nothing usable (a zero or NaN time) says nothing about speed.
    if (workMs.some((ms) => !(ms > 0) || !Number.isFinite(ms))) return;
    for (let r = 0; r < this.worldSize; r++) {
      const h = this.history[r];
      h.push(workMs[r] / usedSplit[r]);
      if (h.length > this.window) h.shift();
    }
    if (this.history[0].length < this.window) return;
    const perWindow = this.history.map(median);
    const stepMs = (split: readonly number[]) => Math.max(...split.map((n, r) => n * perWindow[r]));
    const proposal = proportionalSplit(
      this.total,
      perWindow.map((t) => 1 / t),
    );
    if (stepMs(proposal) < stepMs(this.current) * (1 - this.minGain)) {
      this.current = proposal;
      // Judge the new split on its own observations.
      for (const h of this.history) h.length = 0;
    }
  }
}
