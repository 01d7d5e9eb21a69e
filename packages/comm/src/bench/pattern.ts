// Deterministic inputs and expected outputs for the collectives benchmark: every rank can
// compute what every other rank holds, so each result is checked exactly against a reference.
// Values are small integers (-128..127), so float32 sums of any order are exact and a wrong
// count of zero means bit-exact results. The hash has no short period: a chunk placed at the
// wrong offset shows up.

export type BenchOp = 'allreduce' | 'reducescatter' | 'allgather' | 'broadcast';
export const BENCH_OPS: readonly BenchOp[] = ['allreduce', 'reducescatter', 'allgather', 'broadcast'];

/** nccl-tests' bus bandwidth factors: busbw = algbw * factor(n). */
export function busFactor(op: BenchOp, n: number): number {
  if (op === 'allreduce') return (2 * (n - 1)) / n;
  if (op === 'broadcast') return 1;
  return (n - 1) / n;
}

export function value(rank: number, i: number): number {
  return ((Math.imul(i + 1, 0x9e3779b1) ^ Math.imul(rank + 1, 0x85ebca6b)) >>> 24) - 128;
}

export interface Case {
  /**
   * Elements in the op's large buffer (nccl-tests' "count"): allreduce/broadcast buffer,
   * reduce-scatter input, all-gather output.
   */
  count: number;
  input: Float32Array;
  /** Where the result lands (the input itself for in-place ops). */
  output: Float32Array;
  expected: Float32Array;
  /** Restores the input (and poisons a separate output) before an iteration. */
  reset: () => void;
}

/** Buffers for one op at `count` elements (a multiple of n for reduce-scatter / all-gather). */
export function makeCase(op: BenchOp, rank: number, n: number, count: number): Case {
  const fill = (len: number, r: number, offset = 0): Float32Array => {
    const a = new Float32Array(len);
    for (let i = 0; i < len; i++) a[i] = value(r, offset + i);
    return a;
  };
  if (op === 'allreduce' || op === 'broadcast') {
    const pristine = fill(count, rank);
    const expected = op === 'broadcast' ? fill(count, 0) : new Float32Array(count);
    if (op === 'allreduce') for (let r = 0; r < n; r++) for (let i = 0; i < count; i++) expected[i]! += value(r, i);
    const buf = new Float32Array(count);
    return { count, input: buf, output: buf, expected, reset: () => buf.set(pristine) };
  }
  const m = count / n;
  if (op === 'reducescatter') {
    const pristine = fill(count, rank);
    const input = new Float32Array(count);
    const output = new Float32Array(m);
    const expected = new Float32Array(m);
    for (let r = 0; r < n; r++) for (let j = 0; j < m; j++) expected[j]! += value(r, rank * m + j);
    return { count, input, output, expected, reset: () => (input.set(pristine), output.fill(Number.NaN)) };
  }
  const input = fill(m, rank);
  const output = new Float32Array(count);
  const expected = new Float32Array(count);
  for (let r = 0; r < n; r++) for (let j = 0; j < m; j++) expected[r * m + j] = value(r, j);
  const pristine = input.slice();
  return { count, input, output, expected, reset: () => (input.set(pristine), output.fill(Number.NaN)) };
}

export function countWrong(actual: Float32Array, expected: Float32Array): number {
  let wrong = 0;
  for (let i = 0; i < expected.length; i++) if (actual[i] !== expected[i]) wrong++;
  return wrong;
}
