// The global batch re-split over another world size, and the data position across such changes:
// the windows every rank reads through TrainBatches (the trainer's own reader), over a run whose
// world size changes twice, are each window of every epoch exactly once, in the order an
// uninterrupted one-process run reads them.
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '@zeroring/backend';
import { evenSplit, freshPlan, resplitPlan, type BatchPlan } from '../src/trainer/batch-plan.ts';
import { TrainBatches } from '../src/trainer/batches.ts';
import type { TrainRun } from '../src/trainer/run.ts';
import type { WindowData } from '../src/trainer/types.ts';

beforeAll(async () => {
  await initBackend('cpu');
});

describe('resplitPlan', () => {
  it('keeps the global batch, with uneven shares or accumulation where it does not divide', () => {
    expect(resplitPlan(8, 2, 4)).toMatchObject({ global: 8, accum: 1, micro: 8 });
    expect(resplitPlan(8, 2, 4).split).toBeUndefined();
    expect(resplitPlan(8, 3, 4)).toMatchObject({ accum: 1, micro: 8, split: [3, 3, 2] });
    expect(resplitPlan(8, 3, 2)).toMatchObject({ accum: 2, micro: 4, split: [2, 1, 1] });
    expect(resplitPlan(12, 1, 3)).toMatchObject({ accum: 4, micro: 3 });
    // No divisor fits the per-rank batch: the most accumulation that still gives each rank a window.
    expect(resplitPlan(7, 2, 1)).toMatchObject({ accum: 1, micro: 7, split: [4, 3] });
    expect(() => resplitPlan(2, 3, 4)).toThrow(/cannot be split over 3 ranks/);
    expect(evenSplit(10, 4)).toEqual([3, 3, 2, 2]);
  });

  it('is the fresh plan when nothing changed', () => {
    const fresh = freshPlan(4, 3, 2);
    expect(resplitPlan(fresh.global, 4, 6)).toMatchObject({ global: 24, accum: 1, micro: 24 });
    expect(resplitPlan(fresh.global, 4, 3)).toMatchObject({ global: 24, accum: 2, micro: 12 });
  });
});

/** The windows each rank of a world reads for `steps`, through the trainer's batch reader. */
function windowsRead(plan: BatchPlan, worldSize: number, steps: number[], numWindows: number): number[] {
  const read: number[][] = Array.from({ length: worldSize }, () => []);
  const perStep: number[] = [];
  for (const step of steps) {
    for (let rank = 0; rank < worldSize; rank++) {
      const data: WindowData = {
        windowStarts: () => Int32Array.from({ length: numWindows }, (_, i) => i),
        batchAt: (starts) => {
          read[rank].push(...Array.from(starts));
          return { input: new Int32Array(starts.length), targets: new Int32Array(starts.length) };
        },
      };
      const run = {
        cfg: { seed: 5, evalBatches: 0 },
        rank,
        worldSize,
        dataRank: rank,
        dataWorld: worldSize,
        T: 1,
        B: 3,
        batch: plan,
        opts: { data },
      } as unknown as TrainRun;
      const batches = new TrainBatches(run);
      const range = batches.share();
      for (let m = 0; m < plan.accum; m++) {
        const b = batches.train(step, m, range);
        b.input.dispose();
        b.targets.dispose();
      }
    }
    // A step's windows: the micro-batches in order, each rank's part in rank order.
    for (let m = 0; m < plan.accum; m++) {
      for (let rank = 0; rank < worldSize; rank++) {
        const share = plan.split ? plan.split[rank] : plan.micro / worldSize;
        perStep.push(...read[rank].splice(0, share));
      }
    }
  }
  return perStep;
}

describe('data position across world-size changes', () => {
  it('reads every window of an epoch exactly once, as one process would, at 4, then 3, then 2 ranks', () => {
    const numWindows = 50;
    const global = 12;
    const single = windowsRead(freshPlan(1, global, 1), 1, [0, 1, 2, 3, 4, 5, 6, 7, 8], numWindows);
    const changing = [
      ...windowsRead(freshPlan(4, 3, 1), 4, [0, 1, 2], numWindows),
      ...windowsRead(resplitPlan(global, 3, 3), 3, [3, 4, 5], numWindows),
      ...windowsRead(resplitPlan(global, 2, 3), 2, [6, 7, 8], numWindows),
    ];
    expect(changing).toEqual(single);
    // 108 positions: epochs 0 and 1 whole (50 windows each, each once), then 8 of epoch 2.
    for (const epoch of [0, 1]) {
      const seen = changing.slice(epoch * numWindows, (epoch + 1) * numWindows);
      expect([...seen].sort((a, b) => a - b)).toEqual(Array.from({ length: numWindows }, (_, i) => i));
    }
    expect(changing.slice(0, numWindows)).not.toEqual(changing.slice(numWindows, 2 * numWindows));
  });
});
