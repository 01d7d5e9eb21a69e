// Token + position embedding on WebGPU: y[n] = table[ids[n]] + pos[n mod T] in one dispatch,
// and the table's gradient as a scatter-add in one more. tfjs would run a one-hot, a [N,V]
// matmul and a broadcast add forward, and a transposed matmul plus an axis-0 Sum backward.
// The gradient gives one invocation to each (vocabulary row, column) that walks the N ids in
// order: no atomics, so the sum is deterministic; every invocation of a workgroup reads the same
// id, which the hardware broadcasts.
import type * as tf from '@tensorflow/tfjs-core';
import { flatDispatch, runProgram, type WebGPUProgram } from './program.ts';

const WORKGROUP = 64;

function gatherProgram(n: number, cols: number, withPositions: boolean): WebGPUProgram {
  return {
    variableNames: withPositions ? ['Ids', 'Table', 'Pos'] : ['Ids', 'Table'],
    outputShape: [n, cols],
    shaderKey: `zeroringEmbeddingGather_${withPositions}`,
    dispatchLayout: { x: [0, 1] },
    dispatch: flatDispatch(n * cols, WORKGROUP),
    workgroupSize: [WORKGROUP, 1, 1],
    size: true,
    getUserCode: () => `
  fn main(index : i32) {
    if (index >= uniforms.size) {
      return;
    }
    let cols = uniforms.outShape[1];
    let row = index / cols;
    let col = index - row * cols;
    var v = Table[Ids[row] * cols + col];
    ${withPositions ? 'v = v + Pos[(row % uniforms.posShape[0]) * cols + col];' : ''}
    result[index] = v;
  }`,
  };
}

function scatterAddProgram(vocab: number, cols: number): WebGPUProgram {
  return {
    variableNames: ['Ids', 'Dy'],
    outputShape: [vocab, cols],
    shaderKey: 'zeroringEmbeddingScatterAdd',
    dispatchLayout: { x: [0, 1] },
    dispatch: flatDispatch(vocab * cols, WORKGROUP),
    workgroupSize: [WORKGROUP, 1, 1],
    size: true,
    getUserCode: () => `
  fn main(index : i32) {
    if (index >= uniforms.size) {
      return;
    }
    let cols = uniforms.outShape[1];
    let v = index / cols;
    let col = index - v * cols;
    let n = uniforms.idsShape;
    var acc = 0.0;
    for (var i = 0; i < n; i = i + 1) {
      if (Ids[i] == v) {
        acc = acc + Dy[i * cols + col];
      }
    }
    result[index] = acc;
  }`,
  };
}

/**
 * Rows table[ids[n]] of table [V,C] for int32 ids [N], plus pos[n mod T] of pos [T,C] when given
 * (ids laid out as [B,T] flattened): [N,C] in one dispatch.
 */
export function webgpuEmbeddingGather(ids: tf.Tensor1D, table: tf.Tensor2D, pos?: tf.Tensor2D): tf.Tensor2D {
  const inputs = pos ? [ids, table, pos] : [ids, table];
  return runProgram(gatherProgram(ids.shape[0], table.shape[1], pos !== undefined), inputs) as tf.Tensor2D;
}

/** The table's gradient: out[v] = sum of dy[n] over the n with ids[n] = v, [V,C] in one dispatch. */
export function webgpuEmbeddingGrad(ids: tf.Tensor1D, dy: tf.Tensor2D, vocab: number): tf.Tensor2D {
  return runProgram(scatterAddProgram(vocab, dy.shape[1]), [ids, dy]) as tf.Tensor2D;
}
