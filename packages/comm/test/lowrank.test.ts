// PowerSGD's linear algebra on known inputs: which parameters are compressed (torch's
// _should_compress on tensor.view(shape[0], -1)), the three products against a naive float64
// reference, and Gram-Schmidt (orthonormal columns spanning the same space; a zero column stays
// zero instead of turning into NaN).
import { describe, expect, it } from 'vitest';
import { Rng } from '@zeroring/core';
import { expand, multiply, multiplyTransposed, orthogonalize, planCompression } from '../src/hooks/lowrank.ts';

function random(n: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: n }, () => rng.normal());
}

/** c (a x b) = x (a x k) y (k x b) in float64, with element accessors. */
function naive(
  a: number,
  b: number,
  k: number,
  x: (i: number, t: number) => number,
  y: (t: number, j: number) => number,
) {
  const c = new Float64Array(a * b);
  for (let i = 0; i < a; i++)
    for (let j = 0; j < b; j++) for (let t = 0; t < k; t++) c[i * b + j]! += x(i, t) * y(t, j);
  return c;
}

function expectClose(got: Float32Array, want: Float64Array): void {
  expect(got.length).toBe(want.length);
  for (let i = 0; i < got.length; i++)
    expect(Math.abs(got[i]! - want[i]!)).toBeLessThan(1e-5 * (1 + Math.abs(want[i]!)));
}

describe('planCompression', () => {
  const params = [
    { name: 'w', shape: [6, 4], offset: 0, size: 24 },
    { name: 'b', shape: [7], offset: 24, size: 7 },
    { name: 'conv', shape: [3, 2, 5], offset: 31, size: 30 },
    { name: 'big', shape: [40, 30], offset: 61, size: 1200 },
    { name: 'scalar', shape: [], offset: 1261, size: 1 },
  ];

  it('views each tensor as shape[0] x rest and compresses when (rows + cols) r rate < rows x cols', () => {
    // Rank 1, rate 2: w 20 < 24 yes; conv (3 + 10) 2 = 26 < 30 yes; big yes; vectors and scalars never.
    const p1 = planCompression(params, 1, 2);
    expect(p1.compressed.map((s) => [s.param.name, s.rows, s.cols, s.rank])).toEqual([
      ['w', 6, 4, 1],
      ['conv', 3, 10, 1],
      ['big', 40, 30, 1],
    ]);
    expect(p1.uncompressed.map((p) => p.name)).toEqual(['b', 'scalar']);
    expect(p1.uncompressedSize).toBe(8);
    expect([p1.pSize, p1.qSize]).toEqual([6 + 3 + 40, 4 + 10 + 30]);
    expect(p1.compressed.map((s) => [s.pOffset, s.qOffset])).toEqual([
      [0, 0],
      [6, 4],
      [9, 14],
    ]);
    // Rank 4: only big gains ((40 + 30) 4 2 = 560 < 1200); w's rank is capped at min(6, 4).
    const p4 = planCompression(params, 4, 2);
    expect(p4.compressed.map((s) => s.param.name)).toEqual(['big']);
    // Rate 0: every matrix, at rank min(rows, cols, r).
    const p0 = planCompression(params, 64, 0);
    expect(p0.compressed.map((s) => [s.param.name, s.rank])).toEqual([
      ['w', 4],
      ['conv', 3],
      ['big', 30],
    ]);
  });
});

// Rank 3 takes the general loops, rank 4 the unrolled ones.
describe.each([3, 4])('low-rank products at rank %i', (r) => {
  const [rows, cols] = [9, 7];
  const m = random(rows * cols, 1);
  const q = random(cols * r, 2);
  const p = random(rows * r, 3);

  it('P = M Q, Q = Mᵀ P and M = P Qᵀ match a float64 reference', () => {
    const gotP = new Float32Array(rows * r);
    multiply(m, q, gotP, rows, cols, r);
    expectClose(
      gotP,
      naive(
        rows,
        r,
        cols,
        (i, t) => m[i * cols + t]!,
        (t, j) => q[t * r + j]!,
      ),
    );
    const gotQ = new Float32Array(cols * r);
    multiplyTransposed(m, p, gotQ, rows, cols, r);
    expectClose(
      gotQ,
      naive(
        cols,
        r,
        rows,
        (j, i) => m[i * cols + j]!,
        (i, k) => p[i * r + k]!,
      ),
    );
    const gotM = new Float32Array(rows * cols);
    expand(p, q, gotM, rows, cols, r);
    expectClose(
      gotM,
      naive(
        rows,
        cols,
        r,
        (i, k) => p[i * r + k]!,
        (k, j) => q[j * r + k]!,
      ),
    );
  });

  it('orthogonalize leaves orthonormal columns spanning the same space', () => {
    const a = random(rows * r, 4);
    const before = a.slice();
    orthogonalize(a, rows, r);
    for (let c = 0; c < r; c++) {
      for (let d = 0; d < r; d++) {
        let dot = 0;
        for (let i = 0; i < rows; i++) dot += a[i * r + c]! * a[i * r + d]!;
        expect(Math.abs(dot - (c === d ? 1 : 0))).toBeLessThan(1e-6);
      }
    }
    // Same span: projecting the original columns onto the new ones loses nothing.
    const proj = new Float32Array(rows * r);
    const coef = new Float32Array(r * r);
    multiplyTransposed(a, before, coef, rows, r, r); // coef = Aᵀ before
    for (let i = 0; i < rows; i++)
      for (let c = 0; c < r; c++) for (let k = 0; k < r; k++) proj[i * r + c]! += a[i * r + k]! * coef[k * r + c]!;
    for (let i = 0; i < proj.length; i++) expect(Math.abs(proj[i]! - before[i]!)).toBeLessThan(1e-5);
  });

  it('a zero column stays zero (a vanished gradient), the others still orthonormal', () => {
    const a = random(rows * r, 5);
    for (let i = 0; i < rows; i++) a[i * r + 1] = 0;
    orthogonalize(a, rows, r);
    for (let i = 0; i < rows; i++) expect(a[i * r + 1]).toBe(0);
    expect(a.every((v) => Number.isFinite(v))).toBe(true);
    let norm2 = 0;
    for (let i = 0; i < rows; i++) norm2 += a[i * r + 2]! ** 2;
    expect(Math.abs(norm2 - 1)).toBeLessThan(1e-6);
  });
});
