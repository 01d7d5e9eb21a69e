// Cuts a model's blocks into pipeline stages: contiguous runs of blocks, the largest stage's
// parameter count as small as it can be (the linear partition problem, solved exactly by dynamic
// programming; models have tens of blocks). Stage s holds blocks [first, end). A parameter read by
// blocks on two stages (a tied embedding) is counted on both: each stage holds its own copy.
import type { ParamSpec } from '@zeroring/core';
import { ScheduleError } from './schedule.ts';

export interface StageCut {
  stage: number;
  /** First block of the stage. */
  first: number;
  /** One past its last block. */
  end: number;
  params: number;
}

const countOf = (b: number | { readonly params: readonly ParamSpec[] }): number =>
  typeof b === 'number' ? b : b.params.reduce((a, p) => a + p.shape.reduce((x, y) => x * y, 1), 0);

/** Balanced contiguous split of blocks (or their parameter counts) into `stages` non-empty stages. */
export function cutStages(
  blocks: readonly (number | { readonly params: readonly ParamSpec[] })[],
  stages: number,
): StageCut[] {
  const counts = blocks.map(countOf);
  const n = counts.length;
  if (!Number.isSafeInteger(stages) || stages < 1 || stages > n)
    throw new ScheduleError('shape', 0, -1, `stages = ${stages}, expected an integer in [1, ${n}] (the block count)`);
  for (const [i, c] of counts.entries())
    if (!Number.isSafeInteger(c) || c < 0)
      throw new ScheduleError('bad', 0, -1, `parameter count of block ${i} = ${c}, expected an integer >= 0`);
  const prefix = [0];
  for (const c of counts) prefix.push(prefix.at(-1)! + c);
  // best[k][i]: smallest max-stage count of the first i blocks cut into k stages; from[k][i]: its last cut.
  const best = Array.from({ length: stages + 1 }, () => new Array<number>(n + 1).fill(Infinity));
  const from = Array.from({ length: stages + 1 }, () => new Array<number>(n + 1).fill(0));
  best[0]![0] = 0;
  for (let k = 1; k <= stages; k++)
    for (let i = k; i <= n; i++)
      for (let j = k - 1; j < i; j++) {
        const v = Math.max(best[k - 1]![j]!, prefix[i]! - prefix[j]!);
        // Strictly better only: among equal maxima the earliest cut wins, so the result is deterministic.
        if (v < best[k]![i]!) {
          best[k]![i] = v;
          from[k]![i] = j;
        }
      }
  const cuts: StageCut[] = [];
  let end = n;
  for (let k = stages; k >= 1; k--) {
    const first = from[k]![end]!;
    cuts.unshift({ stage: k - 1, first, end, params: prefix[end]! - prefix[first]! });
    end = first;
  }
  return cuts;
}
