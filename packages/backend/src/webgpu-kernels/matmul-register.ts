// A WGSL matmul without workgroup memory or barriers: C = op(A) @ op(B) (+ bias per column), op()
// the identity or a transpose chosen per shader variant, so a linear layer's forward (X @ W + b)
// and both gradients (dY @ Wᵀ, Xᵀ @ dY) read their operands in place. Rank 2, float32.
//
// Why no shared memory: on lavapipe (Vulkan on the CPU) a workgroupBarrier() costs far more than
// the loads it saves, because the CPU's caches already do what workgroup memory does on a GPU.
// So each invocation computes a register tile of ROWS×COLS outputs (COLS a multiple of 4, kept
// as vec4 accumulators) straight from global memory: per step of k it loads ROWS values of A and
// COLS of B and does ROWS·COLS multiply-adds. Invocations are numbered column tile fastest, so
// neighbours share the same rows of A (cache hits) and read adjacent columns of B. K is walked 4
// at a time with a scalar tail. Rows and columns past the edge are clamped for the loads (they
// read a valid element, and the result is dropped at the store), so the inner loop has no
// branches. On a real GPU tfjs's tiled kernel is usually faster: matmul-choice.ts measures which.
import * as tf from '@tensorflow/tfjs-core';
import { flatDispatch, runProgram, type WebGPUProgram } from './program.ts';

const WORKGROUP = 64;

/** Output rows × columns per invocation; columns a multiple of 4. */
export interface RegisterTile {
  rows: number;
  cols: number;
}

export const REGISTER_TILES: readonly RegisterTile[] = [
  { rows: 4, cols: 4 },
  { rows: 4, cols: 8 },
  { rows: 8, cols: 4 },
];

function program(
  m: number,
  n: number,
  tile: RegisterTile,
  transposeA: boolean,
  transposeB: boolean,
  bias: boolean,
): WebGPUProgram {
  const { rows: R, cols: C } = tile;
  const groups = C / 4;
  const tilesN = Math.ceil(n / C);
  const tiles = Math.ceil(m / R) * tilesN;
  const lines = (count: number, f: (i: number) => string) => Array.from({ length: count }, (_, i) => f(i)).join('\n');
  // A[row, k]: stored [M, K], or [K, M] when transposed; B[k, col]: stored [K, N], or [N, K].
  const aAt = (i: number, k: string) => (transposeA ? `A[(${k}) * uniforms.m + r${i}]` : `A[a${i} + ${k}]`);
  const bAt = (j: number, k: string) => (transposeB ? `B[b${j} + ${k}]` : `B[(${k}) * uniforms.n + c${j}]`);
  // acc{i}_{g} holds row i's columns 4g..4g+3.
  const fma = (i: number, g: number) => `acc${i}_${g} = fma(vec4<f32>(x${i}), y${g}, acc${i}_${g});`;
  const step = (k: string) => `{
        ${lines(R, (i) => `let x${i} = ${aAt(i, k)};`)}
        ${lines(groups, (g) => `let y${g} = vec4<f32>(${[0, 1, 2, 3].map((j) => bAt(4 * g + j, k)).join(', ')});`)}
        ${lines(R * groups, (t) => fma(Math.floor(t / groups), t % groups))}
      }`;
  const storeColumn = (c: number, j: number) =>
    `if (col0 + ${c} < uniforms.n) { result[row * uniforms.n + col0 + ${c}] = v[${j}]; }`;
  const store = lines(R * groups, (t) => {
    const [i, g] = [Math.floor(t / groups), t % groups];
    const add = bias ? ` + vec4<f32>(${[0, 1, 2, 3].map((j) => `BIAS[c${4 * g + j}]`).join(', ')})` : '';
    return `{ let v = acc${i}_${g}${add}; let row = row0 + ${i};
        if (row < uniforms.m) {
          ${[0, 1, 2, 3].map((j) => storeColumn(4 * g + j, j)).join('\n          ')}
        } }`;
  });
  return {
    variableNames: bias ? ['A', 'B', 'BIAS'] : ['A', 'B'],
    outputShape: [m, n],
    shaderKey: `zrMatMulRegister_${R}x${C}_${transposeA ? 't' : 'n'}${transposeB ? 't' : 'n'}${bias ? '_bias' : ''}`,
    dispatchLayout: { x: [0] },
    dispatch: flatDispatch(tiles, WORKGROUP),
    workgroupSize: [WORKGROUP, 1, 1],
    uniforms: 'm : i32, n : i32, k : i32, tilesN : i32, tiles : i32,',
    getUserCode: () => `
    fn main(index : i32) {
      if (index >= uniforms.tiles) { return; }
      let tileRow = index / uniforms.tilesN;
      let row0 = tileRow * ${R};
      let col0 = (index - tileRow * uniforms.tilesN) * ${C};
      ${lines(R, (i) => `let r${i} = min(row0 + ${i}, uniforms.m - 1);`)}
      ${lines(C, (j) => `let c${j} = min(col0 + ${j}, uniforms.n - 1);`)}
      ${transposeA ? '' : lines(R, (i) => `let a${i} = r${i} * uniforms.k;`)}
      ${transposeB ? lines(C, (j) => `let b${j} = c${j} * uniforms.k;`) : ''}
      ${lines(R * groups, (t) => `var acc${Math.floor(t / groups)}_${t % groups} = vec4<f32>(0.0);`)}
      let k4 = uniforms.k - uniforms.k % 4;
      for (var k = 0; k < k4; k = k + 4) {
        ${step('k')}
        ${step('k + 1')}
        ${step('k + 2')}
        ${step('k + 3')}
      }
      for (var k = k4; k < uniforms.k; k = k + 1) {
        ${step('k')}
      }
      ${store}
    }
  `,
  };
}

/**
 * op(a) @ op(b) (+ bias [N] added to every row) on the webgpu backend with the register-tile
 * program, op() a transpose when asked (as tf.matMul's flags). Rank 2, float32, no gradient.
 */
export function registerMatMul(
  a: tf.Tensor,
  b: tf.Tensor,
  options: { transposeA?: boolean; transposeB?: boolean; bias?: tf.Tensor; tile?: RegisterTile } = {},
): tf.Tensor2D {
  const { transposeA = false, transposeB = false, bias, tile = REGISTER_TILES[0]! } = options;
  if (a.rank !== 2 || b.rank !== 2)
    throw new RangeError(
      `registerMatMul: rank-2 operands only, got [${a.shape.join(', ')}] and [${b.shape.join(', ')}]`,
    );
  const [m, k] = transposeA ? [a.shape[1]!, a.shape[0]!] : [a.shape[0]!, a.shape[1]!];
  const [kb, n] = transposeB ? [b.shape[1]!, b.shape[0]!] : [b.shape[0]!, b.shape[1]!];
  if (k !== kb)
    throw new RangeError(
      `registerMatMul: shapes [${a.shape.join(', ')}]${transposeA ? 'ᵀ' : ''} and ` +
        `[${b.shape.join(', ')}]${transposeB ? 'ᵀ' : ''} do not multiply`,
    );
  if (bias && bias.size !== n) throw new RangeError(`registerMatMul: bias of ${bias.size} values for ${n} columns`);
  if (a.dtype !== 'float32' || b.dtype !== 'float32' || (bias && bias.dtype !== 'float32'))
    throw new TypeError('registerMatMul: expected float32 operands');
  if (tile.cols % 4 !== 0 || tile.rows < 1)
    throw new RangeError('registerMatMul: tile columns must be a multiple of 4');
  if (m === 0 || n === 0) return tf.zeros([m, n]);
  if (k === 0) return (bias ? tf.add(tf.zeros([m, n]), bias) : tf.zeros([m, n])) as tf.Tensor2D;
  const tilesN = Math.ceil(n / tile.cols);
  const tiles = Math.ceil(m / tile.rows) * tilesN;
  const uniforms = [m, n, k, tilesN, tiles].map((v) => ({ type: 'int32' as const, data: [v] }));
  const inputs = bias ? [a, b, bias] : [a, b];
  return runProgram(program(m, n, tile, transposeA, transposeB, !!bias), inputs, uniforms) as tf.Tensor2D;
}
