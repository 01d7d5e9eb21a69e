// Elementwise reductions on float32: out[i] = x[i] (op) y[i]. Sums of large chunks go through
// WebAssembly SIMD (simd-add.ts, 2x the loop here), the rest through plain loops unrolled by
// four (about a third faster than the simple loop in V8), because on loopback the reduction is
// a visible share of an all-reduce's CPU time, next to the kernel's socket copies. 'avg'
// reduces as 'sum' and is scaled once by 1/worldSize where the fully reduced chunk first
// exists, so every rank gets bit-identical results. max/min propagate NaN, as torch does.
import { simdAdd } from './simd-add.ts';
import type { ReduceOp } from './types.ts';

/** out may alias x or y. All three have the same length. */
export function combine(op: ReduceOp, out: Float32Array, x: Float32Array, y: Float32Array): void {
  if (op === 'sum' || op === 'avg') return add(out, x, y);
  if (op === 'max') return max(out, x, y);
  return min(out, x, y);
}

/** Below this many elements the copies into WebAssembly memory cost more than they save. */
const SIMD_MIN_ELEMS = 4096;

function add(out: Float32Array, x: Float32Array, y: Float32Array): void {
  const n = out.length;
  let i = n >= SIMD_MIN_ELEMS ? simdAdd(out, x, y) : 0;
  for (; i + 4 <= n; i += 4) {
    out[i] = x[i]! + y[i]!;
    out[i + 1] = x[i + 1]! + y[i + 1]!;
    out[i + 2] = x[i + 2]! + y[i + 2]!;
    out[i + 3] = x[i + 3]! + y[i + 3]!;
  }
  for (; i < n; i++) out[i] = x[i]! + y[i]!;
}

function max(out: Float32Array, x: Float32Array, y: Float32Array): void {
  for (let i = 0; i < out.length; i++) {
    const u = x[i]!;
    const v = y[i]!;
    out[i] = u > v || u !== u ? u : v;
  }
}

function min(out: Float32Array, x: Float32Array, y: Float32Array): void {
  for (let i = 0; i < out.length; i++) {
    const u = x[i]!;
    const v = y[i]!;
    out[i] = u < v || u !== u ? u : v;
  }
}

export function scale(a: Float32Array, s: number): void {
  for (let i = 0; i < a.length; i++) a[i]! *= s;
}
