// Causal self-attention on WebGPU in the manner of FlashAttention-2: the T x T scores of a head
// never reach global memory. Forward is one dispatch, backward two:
//   forward   qkv -> y [B*T, C]                        one workgroup per (query tile, head, batch)
//   dQ        qkv, y, dy -> [dq | lse | D]             one workgroup per (query tile, head, batch)
//   dK, dV    qkv, [dq | lse | D], dy -> dqkv [B*T, 3C] one workgroup per (key tile, head, batch)
// q, k and v are read straight from the qkv rows and the gradient is written straight into
// dqkv's layout, so there is no split, transpose or concat around them.
//
// Why the forward does not write the log-sum-exp: a tfjs program has one output, so y and lse
// would share a packed buffer and y would need a slice (a copy dispatch and a second B*T*C buffer
// kept alive until backward). The dQ program instead recomputes lse with the same online softmax
// while it accumulates dq, which costs nothing extra: it has to compute every score q_i . k_j
// anyway, and dq can be accumulated unnormalised and rescaled with the running max just as y is.
// D = rowsum(dy * y) needs only the row that invocation already holds. The key-side program then
// reads lse and D from the dQ program's output, and copies dq into dqkv while it writes dk and dv.
// Saved for backward: qkv and y, both alive anyway; no extra activation memory at all.
//
// Tiles: 32 rows per workgroup (one invocation per row), and an inner tile sized so that the two
// tiles kept in workgroup memory (k and v, or q and dy, plus lse and D) fit in 16 KiB, WebGPU's
// default limit for workgroup storage: 32 rows for hs <= 32, 16 for hs = 64.
import * as tf from '@tensorflow/tfjs-core';
import { forwardSource, keyGradSource, queryGradSource, type AttentionTiles } from './attention-wgsl.ts';
import { runProgram, type WebGPUProgram } from './program.ts';

/** Batch, sequence length and heads of a qkv [B*T, 3C] tensor. */
export interface FlashAttentionShape {
  B: number;
  T: number;
  H: number;
}

const ROWS = 32;
const WORKGROUP_STORAGE_BYTES = 16384;
/**
 * Larger heads keep many private vec4s per invocation (four rows of hs in dK/dV), which lavapipe
 * compiles slowly; the GPT presets use 32 and 64, and larger heads take the tfjs-ops path.
 */
const MAX_HEAD_SIZE = 64;

/** True when the programs here handle head size hs (a multiple of 4, up to 64). */
export function flashAttentionSupports(hs: number): boolean {
  return Number.isInteger(hs) && hs > 0 && hs % 4 === 0 && hs <= MAX_HEAD_SIZE;
}

/** Inner tile rows: the largest power of two up to 32 with two tiles of hs plus two scalars per row in 16 KiB. */
export function attentionTiles(hs: number): AttentionTiles {
  let tile = ROWS;
  while (tile > 1 && 2 * tile * (hs + 1) * 4 > WORKGROUP_STORAGE_BYTES) tile /= 2;
  return { hs, rows: ROWS, tile };
}

function checkShape(qkv: tf.Tensor, { B, T, H }: FlashAttentionShape): number {
  const C = qkv.shape[1]! / 3;
  if (qkv.rank !== 2 || !Number.isInteger(C) || C % H !== 0 || qkv.shape[0] !== B * T) {
    throw new RangeError(
      `qkv shape ${JSON.stringify(qkv.shape)} does not match B=${B}, T=${T}, H=${H} (expected [B*T, 3C] with H | C)`,
    );
  }
  if (!flashAttentionSupports(C / H)) {
    throw new RangeError(`head size ${C / H} is not supported (expected a multiple of 4 up to ${MAX_HEAD_SIZE})`);
  }
  return C;
}

function program(
  name: string,
  tiles: AttentionTiles,
  source: string,
  inputs: { names: string[]; components: number[] },
  out: { shape: number[]; component: number },
  shape: FlashAttentionShape,
  extraUniforms = '',
): WebGPUProgram {
  return {
    variableNames: inputs.names,
    variableComponents: inputs.components,
    outputShape: out.shape,
    outputComponent: out.component,
    // runWebGPUProgram appends the input ranks and types; the code varies with the tiles only.
    shaderKey: `zeroringAttention${name}_${tiles.hs}_${tiles.rows}_${tiles.tile}`,
    dispatchLayout: { x: [0] },
    dispatch: [Math.ceil(shape.T / tiles.rows), shape.H, shape.B],
    workgroupSize: [tiles.rows, 1, 1],
    uniforms: `T : i32, H : i32,${extraUniforms}`,
    getUserCode: () => source,
  };
}

function int(...data: number[]): { type: 'int32'; data: number[] } {
  return { type: 'int32', data };
}

/** y [B*T, C] of causal self-attention over qkv [B*T, 3C] (columns q | k | v, heads contiguous). */
export function flashAttentionForward(qkv: tf.Tensor2D, shape: FlashAttentionShape): tf.Tensor2D {
  const C = checkShape(qkv, shape);
  const tiles = attentionTiles(C / shape.H);
  const p = program(
    'Forward',
    tiles,
    forwardSource(tiles),
    { names: ['X'], components: [4] },
    { shape: [shape.B * shape.T, C], component: 4 },
    shape,
  );
  return runProgram(p, [qkv], [int(shape.T), int(shape.H)]) as tf.Tensor2D;
}

/** dqkv [B*T, 3C] from qkv, the forward's y and the gradient dy of y. Two dispatches. */
export function flashAttentionBackward(
  qkv: tf.Tensor2D,
  y: tf.Tensor2D,
  dy: tf.Tensor2D,
  shape: FlashAttentionShape,
): tf.Tensor2D {
  const C = checkShape(qkv, shape);
  const { B, T, H } = shape;
  const tiles = attentionTiles(C / H);
  const lseAt = B * T * C;
  const dAt = lseAt + B * H * T;
  const stats = program(
    'QueryGrad',
    tiles,
    queryGradSource(tiles),
    { names: ['X', 'Y', 'G'], components: [4, 4, 4] },
    { shape: [dAt + B * H * T], component: 1 },
    shape,
    ' lseAt : i32, dAt : i32,',
  );
  const packed = runProgram(stats, [qkv, y, dy], [int(T), int(H), int(lseAt), int(dAt)]);
  const keys = program(
    'KeyGrad',
    tiles,
    keyGradSource(tiles),
    { names: ['X', 'P', 'G'], components: [4, 1, 4] },
    { shape: [B * T, 3 * C], component: 4 },
    shape,
    ' lseAt : i32, dAt : i32,',
  );
  const dqkv = runProgram(keys, [qkv, packed, dy], [int(T), int(H), int(lseAt), int(dAt)]) as tf.Tensor2D;
  packed.dispose();
  return dqkv;
}
