import { describe, expect, it } from 'vitest';
import { SegmentPlan } from '../src/collectives/plan.ts';

describe('SegmentPlan', () => {
  it.each([
    [0, 1, 4],
    [0, 3, 4],
    [1, 4, 4],
    [7, 3, 2],
    [97, 4, 10],
    [1000, 3, 1000],
  ])(
    'count=%i over %i segments, chunk %i: chunks tile [0, count) exactly, every segment has a chunk',
    (count, segments, chunk) => {
      const p = new SegmentPlan(count, segments, chunk);
      const seen: number[] = [];
      for (let s = 0; s < segments; s++) {
        expect(p.chunks(s)).toBeGreaterThanOrEqual(1);
        expect(p.length(s)).toBeGreaterThanOrEqual(Math.floor(count / segments));
        expect(p.length(s)).toBeLessThanOrEqual(Math.ceil(count / segments));
        for (let k = 0; k < p.chunks(s); k++) {
          const [a, b] = p.range(s, k);
          expect(b - a).toBeLessThanOrEqual(chunk);
          for (let i = a; i < b; i++) seen.push(i);
        }
      }
      expect(seen).toEqual(Array.from({ length: count }, (_, i) => i));
    },
  );

  it('rejects a chunk index outside the schedule', () => {
    const p = new SegmentPlan(10, 2, 4);
    expect(() => p.range(0, 2)).toThrow('collective schedule violated: chunk 2 of segment 0 (has 2)');
  });
});
