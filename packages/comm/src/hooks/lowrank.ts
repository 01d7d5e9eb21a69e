// The linear algebra of PowerSGD on plain row-major Float32Arrays: which parameters are worth a
// low-rank approximation (torch's _should_compress), the three products (P = MQ, Q = MᵀP,
// M = PQᵀ) and Gram-Schmidt on the columns of a tall, thin matrix. The ranks are small (1-8), so
// plain loops with float64 accumulators are fast enough and keep the rounding of a product at one
// float32 rounding per element.
import type { BucketParam } from './types.ts';

/** A parameter's gradient viewed as a rows x cols matrix (torch: tensor.view(shape[0], -1)). */
export interface LowRankSlot {
  readonly param: BucketParam;
  readonly rows: number;
  readonly cols: number;
  /** Columns of its P (rows x rank) and Q (cols x rank): min(rows, cols, the hook's rank). */
  readonly rank: number;
  /** Where its P and Q start in the bucket's P and Q buffers. */
  readonly pOffset: number;
  readonly qOffset: number;
}

export interface CompressionPlan {
  readonly compressed: readonly LowRankSlot[];
  /** Vectors, scalars and matrices too small to gain: all-reduced as they are. */
  readonly uncompressed: readonly BucketParam[];
  readonly pSize: number;
  readonly qSize: number;
  readonly uncompressedSize: number;
}

/** torch's _should_compress: the low-rank form must be `minRate` times smaller than the matrix. */
export function shouldCompress(rows: number, cols: number, rank: number, minRate: number): boolean {
  return (rows + cols) * rank * minRate < rows * cols;
}

export function planCompression(params: readonly BucketParam[], rank: number, minRate: number): CompressionPlan {
  const compressed: LowRankSlot[] = [];
  const uncompressed: BucketParam[] = [];
  let pSize = 0;
  let qSize = 0;
  let uncompressedSize = 0;
  for (const param of params) {
    // A vector or scalar would be rows x 1: rank 1 costs more than the vector itself.
    const rows = param.shape.length >= 2 ? param.shape[0]! : 0;
    const cols = rows > 0 ? param.size / rows : 0;
    const r = Math.min(rows, cols, rank);
    if (rows > 0 && cols > 0 && shouldCompress(rows, cols, r, minRate)) {
      compressed.push({ param, rows, cols, rank: r, pOffset: pSize, qOffset: qSize });
      pSize += rows * r;
      qSize += cols * r;
    } else {
      uncompressed.push(param);
      uncompressedSize += param.size;
    }
  }
  return { compressed, uncompressed, pSize, qSize, uncompressedSize };
}

/** p (rows x r) = m (rows x cols) q (cols x r). */
export function multiply(
  m: Float32Array,
  q: Float32Array,
  p: Float32Array,
  rows: number,
  cols: number,
  r: number,
): void {
  if (r === 4) return multiply4(m, q, p, rows, cols);
  const acc = new Float64Array(r);
  for (let i = 0; i < rows; i++) {
    acc.fill(0);
    const row = i * cols;
    for (let j = 0; j < cols; j++) {
      const v = m[row + j]!;
      const qj = j * r;
      for (let k = 0; k < r; k++) acc[k]! += v * q[qj + k]!;
    }
    for (let k = 0; k < r; k++) p[i * r + k] = acc[k]!;
  }
}

/** q (cols x r) = mᵀ p, with m rows x cols and p rows x r. */
export function multiplyTransposed(
  m: Float32Array,
  p: Float32Array,
  q: Float32Array,
  rows: number,
  cols: number,
  r: number,
): void {
  if (r === 4) return multiplyTransposed4(m, p, q, rows, cols);
  const acc = new Float64Array(cols * r);
  for (let i = 0; i < rows; i++) {
    const row = i * cols;
    const pi = i * r;
    for (let j = 0; j < cols; j++) {
      const v = m[row + j]!;
      const qj = j * r;
      for (let k = 0; k < r; k++) acc[qj + k]! += v * p[pi + k]!;
    }
  }
  q.set(acc);
}

/** m (rows x cols) = p qᵀ, with p rows x r and q cols x r. */
export function expand(p: Float32Array, q: Float32Array, m: Float32Array, rows: number, cols: number, r: number): void {
  if (r === 4) return expand4(p, q, m, rows, cols);
  for (let i = 0; i < rows; i++) {
    const pi = i * r;
    for (let j = 0; j < cols; j++) {
      const qj = j * r;
      let s = 0;
      for (let k = 0; k < r; k++) s += p[pi + k]! * q[qj + k]!;
      m[i * cols + j] = s;
    }
  }
}

/**
 * Orthonormal columns in place (a rows x cols matrix, row-major), modified Gram-Schmidt as torch's
 * _orthogonalize: each column is normalised, then removed from the columns after it. A zero column
 * (a gradient that vanished) stays zero instead of becoming NaN; `epsilon` > 0 is torch's
 * orthogonalization_epsilon, added to every norm.
 */
export function orthogonalize(a: Float32Array, rows: number, cols: number, epsilon = 0): void {
  for (let c = 0; c < cols; c++) {
    let sq = 0;
    for (let i = 0; i < rows; i++) sq += a[i * cols + c]! ** 2;
    const norm = Math.sqrt(sq) + epsilon;
    if (norm > 0) for (let i = 0; i < rows; i++) a[i * cols + c]! /= norm;
    for (let d = c + 1; d < cols; d++) {
      let dot = 0;
      for (let i = 0; i < rows; i++) dot += a[i * cols + c]! * a[i * cols + d]!;
      for (let i = 0; i < rows; i++) a[i * cols + d]! -= dot * a[i * cols + c]!;
    }
  }
}

// The three products at rank 4 (the default) with the rank loop unrolled into four locals: the
// same arithmetic in the same order (float64 sums, one float32 rounding per element), about three
// times as fast in V8 as the loops above, which dominate a PowerSGD step on the CPU.

function multiply4(m: Float32Array, q: Float32Array, p: Float32Array, rows: number, cols: number): void {
  for (let i = 0; i < rows; i++) {
    const row = i * cols;
    let a0 = 0;
    let a1 = 0;
    let a2 = 0;
    let a3 = 0;
    for (let j = 0; j < cols; j++) {
      const v = m[row + j]!;
      const qj = 4 * j;
      a0 += v * q[qj]!;
      a1 += v * q[qj + 1]!;
      a2 += v * q[qj + 2]!;
      a3 += v * q[qj + 3]!;
    }
    p[4 * i] = a0;
    p[4 * i + 1] = a1;
    p[4 * i + 2] = a2;
    p[4 * i + 3] = a3;
  }
}

function multiplyTransposed4(m: Float32Array, p: Float32Array, q: Float32Array, rows: number, cols: number): void {
  const acc = new Float64Array(cols * 4);
  for (let i = 0; i < rows; i++) {
    const row = i * cols;
    const p0 = p[4 * i]!;
    const p1 = p[4 * i + 1]!;
    const p2 = p[4 * i + 2]!;
    const p3 = p[4 * i + 3]!;
    for (let j = 0; j < cols; j++) {
      const v = m[row + j]!;
      const qj = 4 * j;
      acc[qj]! += v * p0;
      acc[qj + 1]! += v * p1;
      acc[qj + 2]! += v * p2;
      acc[qj + 3]! += v * p3;
    }
  }
  q.set(acc);
}

function expand4(p: Float32Array, q: Float32Array, m: Float32Array, rows: number, cols: number): void {
  for (let i = 0; i < rows; i++) {
    const p0 = p[4 * i]!;
    const p1 = p[4 * i + 1]!;
    const p2 = p[4 * i + 2]!;
    const p3 = p[4 * i + 3]!;
    const row = i * cols;
    for (let j = 0; j < cols; j++) {
      const qj = 4 * j;
      m[row + j] = p0 * q[qj]! + p1 * q[qj + 1]! + p2 * q[qj + 2]! + p3 * q[qj + 3]!;
    }
  }
}
