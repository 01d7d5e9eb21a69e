import { describe, expect, it } from 'vitest';
import { BatchBalancer, BatchSplitError, proportionalSplit, validateSplit } from '../src/batch-balance.ts';
import { DistributedSampler } from '../src/sampler.ts';
import { mulberry32 } from '@zeroring/core';

describe('proportionalSplit', () => {
  it('sums to the total, gives every rank at least one, follows the weights', () => {
    const rand = mulberry32(3);
    for (const W of [1, 2, 3, 4]) {
      for (const total of [W, W + 1, 7 * W, 31, 97].filter((t) => t >= W)) {
        for (let k = 0; k < 20; k++) {
          const weights = Array.from({ length: W }, () => 0.05 + rand() * 3);
          const split = proportionalSplit(total, weights);
          expect(split.reduce((a, b) => a + b, 0)).toBe(total);
          expect(Math.min(...split)).toBeGreaterThanOrEqual(1);
          // Largest remainder: within one window of the exact share of the windows beyond the first.
          const sumW = weights.reduce((a, b) => a + b, 0);
          split.forEach((n, r) => expect(Math.abs(n - 1 - ((total - W) * weights[r]) / sumW)).toBeLessThan(1));
        }
      }
    }
    expect(proportionalSplit(32, [1, 1])).toEqual([16, 16]);
    expect(proportionalSplit(32, [3, 1])).toEqual([24, 8]);
    expect(proportionalSplit(5, [1, 1])).toEqual([3, 2]); // a tie goes to the lower rank
  });

  it('rejects fewer windows than ranks and unusable weights', () => {
    expect(() => proportionalSplit(1, [1, 1])).toThrow(BatchSplitError);
    expect(() => proportionalSplit(4, [1, 0])).toThrow(/weights \[1, 0\] are invalid/);
    expect(() => proportionalSplit(4, [1, NaN])).toThrow(BatchSplitError);
  });
});

describe('validateSplit', () => {
  it('accepts a split of world size x batch size and names what is wrong otherwise', () => {
    expect(validateSplit([5, 11], 16, 2)).toEqual([5, 11]);
    expect(() => validateSplit([5, 10], 16, 2)).toThrow(/\[5, 10\] is invalid, expected 2 integers >= 1 summing to 16/);
    expect(() => validateSplit([16, 0], 16, 2)).toThrow(BatchSplitError);
    expect(() => validateSplit([8, 8], 16, 3)).toThrow(BatchSplitError);
    expect(() => validateSplit([7.5, 8.5], 16, 2)).toThrow(BatchSplitError);
  });
});

/** Work of one step on ranks whose time per window is `perWindow` (plus a fixed part). */
const workOf = (split: readonly number[], perWindow: readonly number[], fixed = 10) =>
  split.map((n, r) => fixed + n * perWindow[r]);

describe('BatchBalancer', () => {
  it('starts even (or from the given split) and keeps an even split for ranks of equal speed', () => {
    const b = new BatchBalancer({ total: 32, worldSize: 2 });
    expect(b.split).toEqual([16, 16]);
    const rand = mulberry32(9);
    for (let s = 0; s < 50; s++)
      b.observe(b.split, workOf(b.split, [10 * (1 + 0.02 * rand()), 10 * (1 + 0.02 * rand())]));
    expect(b.split).toEqual([16, 16]);
    expect(new BatchBalancer({ total: 12, worldSize: 3, initial: [2, 4, 6] }).split).toEqual([2, 4, 6]);
  });

  it('moves windows to the faster ranks until their work is equal, for 2, 3 and 4 ranks', () => {
    for (const perWindow of [
      [10, 20],
      [5, 10, 15],
      [8, 8, 8, 16],
    ]) {
      const W = perWindow.length;
      const b = new BatchBalancer({ total: 16 * W, worldSize: W });
      for (let s = 0; s < 40; s++) b.observe(b.split, workOf(b.split, perWindow));
      const work = workOf(b.split, perWindow);
      const even = workOf(new Array<number>(W).fill(16), perWindow);
      // The slowest rank's work (the step) is shorter than with the even split, and within one
      // window of the balance point.
      expect(Math.max(...work)).toBeLessThan(Math.max(...even) * 0.85);
      expect(Math.max(...work) - Math.min(...work)).toBeLessThanOrEqual(Math.max(...perWindow));
      expect(b.split.reduce((a, n) => a + n, 0)).toBe(16 * W);
    }
  });

  it('follows a rank that becomes slow and then fast again', () => {
    const b = new BatchBalancer({ total: 32, worldSize: 2 });
    for (let s = 0; s < 20; s++) b.observe(b.split, workOf(b.split, [10, 15]));
    expect(b.split[0]).toBeGreaterThan(b.split[1]);
    for (let s = 0; s < 20; s++) b.observe(b.split, workOf(b.split, [10, 10]));
    expect(b.split).toEqual([16, 16]);
  });

  it('changes nothing for a single outlier step, and ignores unusable reports', () => {
    const b = new BatchBalancer({ total: 32, worldSize: 2 });
    for (let s = 0; s < 5; s++) b.observe(b.split, workOf(b.split, [10, 10]));
    b.observe(b.split, workOf(b.split, [10, 30])); // one slow step (a collection, a hiccup)
    b.observe(b.split, workOf(b.split, [10, 10]));
    b.observe(b.split, [NaN, 0]);
    expect(b.split).toEqual([16, 16]);
  });

  it('gives identical splits to identical observation sequences (every rank computes its own)', () => {
    const run = () => {
      const rand = mulberry32(4);
      const b = new BatchBalancer({ total: 24, worldSize: 3 });
      const seen: string[] = [];
      for (let s = 0; s < 60; s++) {
        b.observe(b.split, workOf(b.split, [10 + 10 * rand(), 10 + 10 * rand(), 10 + 10 * rand()]));
        seen.push(b.split.join(','));
      }
      return seen;
    };
    expect(run()).toEqual(run());
  });

  it('rejects observations for another world size', () => {
    const b = new BatchBalancer({ total: 8, worldSize: 2 });
    expect(() => b.observe([8], [1])).toThrow(/expected 2/);
    expect(() => new BatchBalancer({ total: 8, worldSize: 2, initial: [8, 0] })).toThrow(BatchSplitError);
  });
});

describe('DistributedSampler.stepWindows with uneven splits', () => {
  it('reads the same windows per step however the W*b windows are split', () => {
    for (const W of [1, 2, 3, 4]) {
      const b = 5;
      const samplers = Array.from(
        { length: W },
        (_, rank) => new DistributedSampler({ numWindows: 211, batchSize: b, rank, worldSize: W, seed: 11 }),
      );
      const rand = mulberry32(W);
      for (let step = 0; step < 30; step++) {
        const even = samplers.flatMap((s) => [...s.indices(step)]);
        const split = proportionalSplit(
          W * b,
          Array.from({ length: W }, () => 0.1 + rand()),
        );
        let offset = 0;
        const parts = split.map((n, r) => {
          const got = [...samplers[r].stepWindows(step, offset, n)];
          offset += n;
          return got;
        });
        // The same windows in the same order as the even split (disjoint within an epoch).
        expect(parts.flat()).toEqual(even);
      }
      // The even split is exactly what indices() gives each rank.
      samplers.forEach((s, r) => expect([...s.stepWindows(7, r * b, b)]).toEqual([...s.indices(7)]));
    }
  });

  it('rejects a range outside the step', () => {
    const s = new DistributedSampler({ numWindows: 50, batchSize: 4, rank: 0, worldSize: 2, seed: 1 });
    expect(() => s.stepWindows(0, 6, 3)).toThrow(
      /windows 6\.\.8 of a step are invalid, expected a range within 0\.\.7/,
    );
  });
});
