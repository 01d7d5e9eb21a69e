// Column sums of a row-major matrix on WebGPU: x [N,C] -> [C] in one dispatch, for the bias
// gradients (tfjs would run ones[1,N] @ x plus a reshape, or a transpose and a row sum).
//
// A workgroup of 256 invocations owns a tile of TC adjacent columns and splits the rows into
// 256/TC lanes: lane l sums rows l, l + lanes, ... of its column, so neighbouring invocations
// read neighbouring addresses, then the lanes' partial sums meet in a tree in shared memory.
// TC shrinks to the next power of two of C for narrow matrices (C = 1 puts all 256 invocations
// on rows). The order of additions is fixed, so the result is deterministic (no atomics).
import type * as tf from '@tensorflow/tfjs-core';
import { runProgram, type WebGPUProgram } from './program.ts';
import { COLUMN_WORKGROUP, columnTile, laneReduceSnippet } from './workgroup-reduce.ts';

function columnSumProgram(cols: number): WebGPUProgram {
  const tile = columnTile(cols);
  return {
    variableNames: ['X'],
    outputShape: [cols],
    shaderKey: `zeroringColumnSum_${tile}`,
    dispatchLayout: { x: [0] },
    dispatch: [Math.ceil(cols / tile), 1, 1],
    workgroupSize: [COLUMN_WORKGROUP, 1, 1],
    getUserCode: () => `
  ${laneReduceSnippet('partial', 'f32', tile)}
  fn main(index : i32) {
    let rows = uniforms.xShape[0];
    let cols = uniforms.xShape[1];
    let tid = i32(localIndex);
    let col = i32(workgroupId.x) * ${tile} + tid % ${tile};
    var acc = 0.0;
    if (col < cols) {
      for (var r = tid / ${tile}; r < rows; r = r + ${COLUMN_WORKGROUP / tile}) {
        acc = acc + X[r * cols + col];
      }
    }
    partialReduce(acc, tid);
    if (tid < ${tile} && col < cols) {
      result[col] = partial[tid];
    }
  }`,
  };
}

/** Sum over the rows of x [N,C] -> [C], one dispatch on the active WebGPU backend. */
export function webgpuColumnSum(x: tf.Tensor2D): tf.Tensor1D {
  return runProgram(columnSumProgram(x.shape[1]), [x]) as tf.Tensor1D;
}
