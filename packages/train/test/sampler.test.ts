import { describe, expect, it } from 'vitest';
import { DistributedSampler, fixedWindows, permutation } from '../src/sampler.ts';
import { learningRate } from '../src/schedule.ts';

describe('DistributedSampler', () => {
  it('gives ranks disjoint windows whose union is the single-process batch of W*b', () => {
    const numWindows = 1000;
    const W = 3;
    const b = 4;
    const single = new DistributedSampler({ numWindows, batchSize: W * b, seed: 7 });
    const ranks = Array.from(
      { length: W },
      (_, rank) => new DistributedSampler({ numWindows, batchSize: b, rank, worldSize: W, seed: 7 }),
    );
    for (let step = 0; step < 20; step++) {
      const parts = ranks.map((r) => [...r.indices(step)]);
      const all = parts.flat();
      expect(new Set(all).size).toBe(all.length);
      expect([...all].sort((x, y) => x - y)).toEqual([...single.indices(step)].sort((x, y) => x - y));
    }
  });

  it('covers every window once per epoch per rank set, and reshuffles the next epoch', () => {
    const s0 = new DistributedSampler({ numWindows: 40, batchSize: 5, rank: 0, worldSize: 2, seed: 1 });
    const s1 = new DistributedSampler({ numWindows: 40, batchSize: 5, rank: 1, worldSize: 2, seed: 1 });
    const epoch0 = [0, 1, 2, 3].flatMap((step) => [...s0.indices(step), ...s1.indices(step)]);
    expect(new Set(epoch0).size).toBe(40);
    const epoch1 = [4, 5, 6, 7].flatMap((step) => [...s0.indices(step), ...s1.indices(step)]);
    expect(new Set(epoch1).size).toBe(40);
    expect(epoch1).not.toEqual(epoch0);
    expect(s0.epochOf(4)).toBe(1);
  });

  it('is a pure function of (seed, step)', () => {
    const a = new DistributedSampler({ numWindows: 500, batchSize: 8, seed: 3 });
    const b = new DistributedSampler({ numWindows: 500, batchSize: 8, seed: 3 });
    expect([...a.indices(90)]).toEqual([...b.indices(90)]);
    expect([...a.indices(90)]).not.toEqual([
      ...new DistributedSampler({ numWindows: 500, batchSize: 8, seed: 4 }).indices(90),
    ]);
    expect([...fixedWindows(100, 10, 5)]).toEqual([...fixedWindows(100, 10, 5)]);
    expect([...permutation(10, 2)].sort((x, y) => x - y)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it('rejects a rank outside the world', () => {
    expect(() => new DistributedSampler({ numWindows: 10, batchSize: 1, rank: 2, worldSize: 2, seed: 0 })).toThrow(
      /rank 2 is invalid/,
    );
  });
});

describe('learningRate (nanoGPT get_lr)', () => {
  const s = { lr: 1e-3, minLr: 1e-4, warmupSteps: 10, decaySteps: 100 };
  it('warms up linearly, decays by cosine to minLr, then stays', () => {
    expect(learningRate(s, 0)).toBeCloseTo(1e-3 / 11, 12);
    expect(learningRate(s, 9)).toBeCloseTo((1e-3 * 10) / 11, 12);
    expect(learningRate(s, 10)).toBeCloseTo(1e-3, 12);
    expect(learningRate(s, 55)).toBeCloseTo(1e-4 + 0.5 * 9e-4, 12);
    expect(learningRate(s, 100)).toBeCloseTo(1e-4, 12);
    expect(learningRate(s, 500)).toBe(1e-4);
  });
});
