// A tiled WGSL matmul, C = op(A) @ op(B), with op() the identity or a transpose chosen per shader
// variant: the forward of a linear layer (X @ W) and both of its gradients (dY @ Wᵀ, Xᵀ @ dY)
// run without materialising a transpose. Batched inputs ([batch, rows, cols], the same batch on
// both sides) take one workgroup layer per batch entry.
//
// The classic shared-memory scheme: each workgroup of 16×16 invocations computes a 64×64 tile
// of C, stepping through K 16 at a time; every invocation loads 4 elements of each operand tile
// into workgroup memory and then accumulates a 4×4 block of C in registers, so each value read
// from workgroup memory feeds 4 multiply-adds. The invocation's rows and columns are strided by
// 16 (not contiguous) so that neighbouring invocations store neighbouring columns of C
// (coalesced writes) and read distinct banks. Tile loads follow the operand's memory order
// (k fastest for A, n fastest for B; swapped when transposed) so global reads coalesce too, and
// the shared rows are padded to 65 floats so the transposing stores do not hit one bank.
// Edges of awkward sizes load zeros and skip the stores. 2·16·65 floats (8.3 KB) of workgroup
// memory stays inside WebGPU's default 16 KB limit.
//
// tfjs's own MatMulPackedProgram is the baseline; benchmarks/gpu compares the two per shape of
// the GPT's matmuls, so a caller can pick the faster one per shape on a given GPU.
import * as tf from '@tensorflow/tfjs-core';
import { runProgram, type WebGPUProgram } from './program.ts';

const TILE = 64; // rows and columns of C per workgroup
const TILE_K = 16; // depth of one step through K
const THREADS = 16; // invocations per side of the workgroup (THREADS · 4 = TILE)
const PER = TILE / THREADS; // rows (and columns) of C per invocation
const STRIDE = TILE + 1; // padded row of the shared tiles

/** One operand tile's loads: each invocation stores `TILE·TILE_K / THREADS²` elements. */
function loadTile(name: 'A' | 'B', shared: string, kFastest: boolean): string {
  // element e of the tile, numbered in the operand's memory order, is (outer, inner) with inner
  // the operand's fastest index; `kFastest` says whether that is k (A, or Bᵀ) or m / n (Aᵀ, B).
  const loads = (TILE * TILE_K) / (THREADS * THREADS);
  const lines: string[] = [];
  for (let r = 0; r < loads; r++) {
    const e = `tid + ${r * THREADS * THREADS}`;
    const [kk, mn] = kFastest ? [`(${e}) % ${TILE_K}`, `(${e}) / ${TILE_K}`] : [`(${e}) / ${TILE}`, `(${e}) % ${TILE}`];
    lines.push(`{ let kk = ${kk}; let mn = ${mn}; ${shared}[kk * ${STRIDE} + mn] = load${name}(k0 + kk, mn); }`);
  }
  return lines.join('\n      ');
}

function matMulProgram(
  shape: { rank: number; batch: number; m: number; n: number; k: number },
  transposeA: boolean,
  transposeB: boolean,
): WebGPUProgram {
  const { rank, batch, m, n } = shape;
  // A is [M, K] (or [K, M] when transposed), B is [K, N] (or [N, K]); offsets per batch entry.
  const aIndex = transposeA ? 'k * uniforms.m + row' : 'row * uniforms.k + k';
  const bIndex = transposeB ? 'col * uniforms.k + k' : 'k * uniforms.n + col';
  const acc: string[] = [];
  const fma: string[] = [];
  const store: string[] = [];
  for (let i = 0; i < PER; i++) {
    for (let j = 0; j < PER; j++) {
      acc.push(`var c${i}${j} = 0.0;`);
      fma.push(`c${i}${j} = fma(a${i}, b${j}, c${i}${j});`);
      store.push(`store(row0 + ty + ${i * THREADS}, col0 + tx + ${j * THREADS}, c${i}${j});`);
    }
  }
  const reads = Array.from({ length: PER }, (_, i) => [
    `let a${i} = As[kk * ${STRIDE} + ty + ${i * THREADS}];`,
    `let b${i} = Bs[kk * ${STRIDE} + tx + ${i * THREADS}];`,
  ]).flat();
  return {
    variableNames: ['A', 'B'],
    outputShape: rank === 3 ? [batch, m, n] : [m, n],
    shaderKey: `zrMatMulTiled_${transposeA ? 't' : 'n'}${transposeB ? 't' : 'n'}`,
    dispatchLayout: { x: [0] },
    dispatch: [Math.ceil(n / TILE), Math.ceil(m / TILE), batch],
    workgroupSize: [THREADS, THREADS, 1],
    uniforms: 'm : i32, n : i32, k : i32,',
    getUserCode: () => `
    var<workgroup> As : array<f32, ${TILE_K * STRIDE}>;
    var<workgroup> Bs : array<f32, ${TILE_K * STRIDE}>;
    var<private> aBase : i32;
    var<private> bBase : i32;
    var<private> row0 : i32;
    var<private> col0 : i32;

    fn loadA(k : i32, r : i32) -> f32 {
      let row = row0 + r;
      if (row < uniforms.m && k < uniforms.k) { return A[aBase + ${aIndex}]; }
      return 0.0;
    }

    fn loadB(k : i32, c : i32) -> f32 {
      let col = col0 + c;
      if (col < uniforms.n && k < uniforms.k) { return B[bBase + ${bIndex}]; }
      return 0.0;
    }

    fn store(row : i32, col : i32, value : f32) {
      if (row < uniforms.m && col < uniforms.n) {
        result[i32(workgroupId.z) * uniforms.m * uniforms.n + row * uniforms.n + col] = value;
      }
    }

    fn main(index : i32) {
      let tx = i32(localId.x);
      let ty = i32(localId.y);
      let tid = ty * ${THREADS} + tx;
      row0 = i32(workgroupId.y) * ${TILE};
      col0 = i32(workgroupId.x) * ${TILE};
      aBase = i32(workgroupId.z) * uniforms.m * uniforms.k;
      bBase = i32(workgroupId.z) * uniforms.k * uniforms.n;
      ${acc.join('\n      ')}
      for (var k0 = 0; k0 < uniforms.k; k0 = k0 + ${TILE_K}) {
        ${loadTile('A', 'As', !transposeA)}
        ${loadTile('B', 'Bs', transposeB)}
        workgroupBarrier();
        for (var kk = 0; kk < ${TILE_K}; kk = kk + 1) {
          ${reads.join('\n          ')}
          ${fma.join('\n          ')}
        }
        workgroupBarrier();
      }
      ${store.join('\n      ')}
    }
  `,
  };
}

/** The [batch, rows, cols] of a rank-2 or rank-3 operand, and its name for errors. */
function dims(t: tf.Tensor, name: string): [number, number, number] {
  if (t.rank === 2) return [1, t.shape[0]!, t.shape[1]!];
  if (t.rank === 3) return [t.shape[0]!, t.shape[1]!, t.shape[2]!];
  throw new RangeError(`tiledMatMul: ${name} must be rank 2 or 3, got shape [${t.shape.join(', ')}]`);
}

/**
 * op(a) @ op(b) on the webgpu backend with the tiled program, op() a transpose when asked (as
 * tf.matMul's flags). Rank 2, or rank 3 with the same batch on both sides; float32. No gradient
 * of its own: `tiledMatMulWithGrad` adds one.
 */
export function tiledMatMul(a: tf.Tensor, b: tf.Tensor, transposeA = false, transposeB = false): tf.Tensor {
  const [batchA, ra, ca] = dims(a, 'a');
  const [batchB, rb, cb] = dims(b, 'b');
  const [m, k] = transposeA ? [ca, ra] : [ra, ca];
  const [kb, n] = transposeB ? [cb, rb] : [rb, cb];
  if (k !== kb || batchA !== batchB || a.rank !== b.rank)
    throw new RangeError(
      `tiledMatMul: shapes [${a.shape.join(', ')}]${transposeA ? 'ᵀ' : ''} and ` +
        `[${b.shape.join(', ')}]${transposeB ? 'ᵀ' : ''} do not multiply; expected equal inner sizes and batches`,
    );
  if (a.dtype !== 'float32' || b.dtype !== 'float32')
    throw new TypeError(`tiledMatMul: expected float32 operands, got ${a.dtype} and ${b.dtype}`);
  const program = matMulProgram({ rank: a.rank, batch: batchA, m, n, k }, transposeA, transposeB);
  return runProgram(
    program,
    [a, b],
    [m, n, k].map((v) => ({ type: 'int32' as const, data: [v] })),
  );
}

/**
 * tiledMatMul with the matmul's gradients, themselves tiled matmuls of transposed operands:
 * for C = A @ B, dA = dC @ Bᵀ and dB = Aᵀ @ dC (and the transposed-operand cases likewise).
 */
export function tiledMatMulWithGrad(a: tf.Tensor, b: tf.Tensor, transposeA = false, transposeB = false): tf.Tensor {
  const f = tf.customGrad((x, y, save) => {
    const [xa, yb] = [x as tf.Tensor, y as tf.Tensor];
    (save as tf.GradSaveFunc)([xa, yb]);
    return {
      value: tiledMatMul(xa, yb, transposeA, transposeB),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sa, sb] = saved as [tf.Tensor, tf.Tensor];
        // The four cases of tfjs's own BatchMatMul gradient, each without a materialised transpose.
        const da = transposeA ? tiledMatMul(sb, dy, transposeB, true) : tiledMatMul(dy, sb, false, !transposeB);
        const db = transposeB ? tiledMatMul(dy, sa, true, transposeA) : tiledMatMul(sa, dy, !transposeA, false);
        return [da, db];
      },
    };
  });
  return f(a, b);
}
