// cutStages: contiguous, non-empty, covering every block once, and as balanced (smallest largest
// stage) as any contiguous cut, checked against brute force on awkward counts.
import { describe, expect, it } from 'vitest';
import { createGPT, gptConfig } from '@zeroring/gpt';
import { mulberry32, paramCount, uniqueParams } from '@zeroring/core';
import { ScheduleError, cutStages, type StageCut } from '../src/pipeline/index.ts';

/** Smallest possible largest stage over every contiguous cut into p non-empty stages. */
function bruteBest(counts: number[], p: number): number {
  if (p === 1) return counts.reduce((a, b) => a + b, 0);
  let best = Infinity;
  for (let i = 1; i <= counts.length - p + 1; i++) {
    const head = counts.slice(0, i).reduce((a, b) => a + b, 0);
    best = Math.min(best, Math.max(head, bruteBest(counts.slice(i), p - 1)));
  }
  return best;
}

function expectContiguous(cuts: StageCut[], counts: number[], p: number): void {
  expect(cuts).toHaveLength(p);
  expect(cuts[0]!.first).toBe(0);
  expect(cuts.at(-1)!.end).toBe(counts.length);
  for (const [s, c] of cuts.entries()) {
    expect(c.stage).toBe(s);
    expect(c.end).toBeGreaterThan(c.first);
    if (s > 0) expect(c.first).toBe(cuts[s - 1]!.end);
    expect(c.params).toBe(counts.slice(c.first, c.end).reduce((a, b) => a + b, 0));
  }
}

describe('cutStages', () => {
  it('splits even counts evenly and awkward ones as well as any contiguous cut can', () => {
    expect(cutStages([5, 5, 5, 5], 2).map((c) => [c.first, c.end])).toEqual([
      [0, 2],
      [2, 4],
    ]);
    // One huge block: it gets a stage alone, the rest share.
    expect(cutStages([1, 1, 100, 1, 1], 3).map((c) => c.params)).toEqual([2, 100, 2]);
    // Zeros, and as many stages as blocks.
    expect(cutStages([0, 7, 0, 3], 4).map((c) => c.params)).toEqual([0, 7, 0, 3]);
    const rng = mulberry32(7);
    for (let trial = 0; trial < 200; trial++) {
      const n = 1 + Math.floor(rng() * 8);
      const counts = Array.from({ length: n }, () => Math.floor(rng() * (rng() < 0.2 ? 1000 : 20)));
      const p = 1 + Math.floor(rng() * n);
      const cuts = cutStages(counts, p);
      expectContiguous(cuts, counts, p);
      expect(Math.max(...cuts.map((c) => c.params)), JSON.stringify({ counts, p })).toBe(bruteBest(counts, p));
    }
  });

  it('counts a GPT preset per block, the tied embedding on both the first and the last stage', () => {
    const model = createGPT(gptConfig('tiny', 65));
    const cuts = cutStages(model.blocks, 2);
    const perBlock = model.blocks.map((b) => b.params.reduce((a, p) => a + p.shape.reduce((x, y) => x * y, 1), 0));
    expectContiguous(cuts, perBlock, 2);
    expect(cuts.map((c) => c.params)).toEqual(cutStages(perBlock, 2).map((c) => c.params));
    // The head reads wte, so the stages together hold V x C more than the model's distinct parameters.
    const distinct = uniqueParams(model).reduce((a, p) => a + paramCount(p), 0);
    expect(cuts[0]!.params + cuts[1]!.params - distinct).toBe(65 * model.config.nEmbd);
  });

  it('rejects more stages than blocks, no stages, and bad counts', () => {
    expect(() => cutStages([1, 2], 3)).toThrow(ScheduleError);
    expect(() => cutStages([1, 2], 3)).toThrow(/stages = 3, expected an integer in \[1, 2\] \(the block count\)/);
    expect(() => cutStages([1, 2], 0)).toThrow(/stages = 0/);
    expect(() => cutStages([1, -2], 1)).toThrow(/parameter count of block 1 = -2, expected an integer >= 0/);
  });
});
