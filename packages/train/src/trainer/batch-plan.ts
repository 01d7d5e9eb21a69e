// How a step's global batch is cut into micro-batches and ranks. The global batch (windows per
// optimizer step) is what a run keeps when its world size changes: a resumed run re-splits the
// same windows over the ranks it has now, so it trains the same model as an uninterrupted one.
// Where the micro-batch does not divide by the world size, ranks take uneven shares (each weighed
// by its count, so the step's gradient is still the mean over all windows); where a rank's share
// would exceed its configured batch size, more micro-batches are accumulated instead.
// Details: docs/internals.md#batch-plan
import { TrainerError } from './types.ts';

export interface BatchPlan {
  /** Windows per optimizer step over all ranks. */
  global: number;
  /** Micro-batches per step. */
  accum: number;
  /** Windows per micro-batch over all ranks: global / accum. */
  micro: number;
  /** Windows of each micro-batch per rank, when micro does not divide by the world size. */
  split?: number[];
  /** A saved run's global batch re-split over another world: a configured split no longer applies. */
  resplit?: boolean;
}

/** The plan of a fresh run: `batchSize` windows per rank per micro-batch. */
export function freshPlan(worldSize: number, batchSize: number, accum: number): BatchPlan {
  const micro = worldSize * batchSize;
  return { global: micro * accum, accum, micro };
}

/** `total` windows over `worldSize` ranks as evenly as possible (the lower ranks take the remainder). */
export function evenSplit(total: number, worldSize: number): number[] {
  const base = Math.floor(total / worldSize);
  return Array.from({ length: worldSize }, (_, r) => base + (r < total % worldSize ? 1 : 0));
}

/**
 * The plan that trains a saved run's global batch on `worldSize` ranks: the fewest micro-batches
 * (dividing the global batch) for which no rank reads more than `batchSize` windows at once, and
 * every rank at least one. With the saved world size and accumulation it is the saved plan.
 */
export function resplitPlan(global: number, worldSize: number, batchSize: number): BatchPlan {
  if (!Number.isInteger(global) || global < worldSize) {
    throw new TrainerError(
      `a global batch of ${global} windows cannot be split over ${worldSize} ranks, expected at least one per rank`,
    );
  }
  let accum = global;
  for (let a = 1; a <= global; a++) {
    if (global % a !== 0 || global / a < worldSize) continue;
    if (Math.ceil(global / a / worldSize) <= batchSize) {
      accum = a;
      break;
    }
    accum = a; // the largest accumulation that still gives every rank a window, if none fits batchSize
  }
  const micro = global / accum;
  const split = micro % worldSize === 0 ? undefined : evenSplit(micro, worldSize);
  return { global, accum, micro, ...(split ? { split } : {}), resplit: true };
}

/** This rank's windows of a micro-batch: [offset, offset + count) of its `micro` windows. */
export function rankRange(split: readonly number[], rank: number): { offset: number; count: number } {
  return { offset: split.slice(0, rank).reduce((a, n) => a + n, 0), count: split[rank] };
}
