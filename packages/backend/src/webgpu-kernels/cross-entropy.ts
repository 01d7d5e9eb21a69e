// Softmax cross-entropy of logits [N,V] against int32 targets [N] on WebGPU, mean over rows:
//   rows     per row r: lse_r = log sum_v exp(x_rv), loss_r = lse_r - x_r,t_r -> [N,2]  one dispatch
//   mean     (1/N) sum_r loss_r -> scalar                                      one dispatch
//   grad     (exp(x_rv - lse_r) - [v = t_r]) * dy / N -> [N,V]                 one dispatch
// One invocation per row for the row results (see layer-norm.ts for why not a workgroup per row).
// tfjs ops take oneHot, cast, logSoftmax (max, sub, exp, sum, log, sub), mul, sum and mul
// forward and as many again backward. The loss stays on the device; the [N,2] row results are
// what the gradient needs (the log-sum-exp), so nothing is recomputed row-wide in backward.
// A target outside [0, V) matches no class (a zero one-hot row, as tf.oneHot gives): its row
// adds nothing to the loss, so its gradient is zero (still counted in N, as in the mean of
// tfjs's ops).
import * as tf from '@tensorflow/tfjs-core';
import { flatDispatch, runProgram, type WebGPUProgram } from './program.ts';
import { MAX_ELEMENTWISE_GROUPS, rowReduceSnippet } from './workgroup-reduce.ts';

/** Rows per workgroup of the per-row kernel (one invocation per row, as in layer-norm.ts). */
const ROW_WORKGROUP = 64;
const MEAN_WORKGROUP = 256;
const GRAD_WORKGROUP = 256;

function rowsProgram(rows: number): WebGPUProgram {
  return {
    variableNames: ['X', 'Target'],
    outputShape: [rows, 2],
    shaderKey: 'zeroringCrossEntropyRows',
    dispatchLayout: { x: [0, 1] },
    dispatch: flatDispatch(rows, ROW_WORKGROUP),
    workgroupSize: [ROW_WORKGROUP, 1, 1],
    getUserCode: () => `
  fn main(row : i32) {
    let rows = uniforms.xShape[0];
    let cols = uniforms.xShape[1];
    if (row < rows) {
      let base = row * cols;
      var m = -3.402823e+38;
      for (var c = 0; c < cols; c = c + 1) {
        m = max(m, X[base + c]);
      }
      var s = 0.0;
      for (var c = 0; c < cols; c = c + 1) {
        s = s + exp(X[base + c] - m);
      }
      let lse = m + log(s);
      let t = Target[row];
      var loss = 0.0;
      if (t >= 0 && t < cols) {
        loss = lse - X[base + t];
      }
      result[row * 2] = lse;
      result[row * 2 + 1] = loss;
    }
  }`,
  };
}

function meanProgram(): WebGPUProgram {
  return {
    variableNames: ['Rows'],
    outputShape: [1],
    shaderKey: 'zeroringCrossEntropyMean',
    dispatchLayout: { x: [0] },
    dispatch: [1, 1, 1],
    workgroupSize: [MEAN_WORKGROUP, 1, 1],
    getUserCode: () => `
  ${rowReduceSnippet('total', 'f32', MEAN_WORKGROUP, 'sum')}
  fn main(index : i32) {
    let rows = uniforms.rowsShape[0];
    let tid = i32(localIndex);
    var s = 0.0;
    for (var r = tid; r < rows; r = r + ${MEAN_WORKGROUP}) {
      s = s + Rows[r * 2 + 1];
    }
    let sum = totalReduce(s, tid);
    if (tid == 0) {
      result[0] = sum / f32(rows);
    }
  }`,
  };
}

function gradProgram(rows: number, cols: number): WebGPUProgram {
  return {
    variableNames: ['X', 'Target', 'Rows', 'DY'],
    outputShape: [rows, cols],
    shaderKey: 'zeroringCrossEntropyGrad',
    dispatchLayout: { x: [0, 1] },
    dispatch: [Math.min(MAX_ELEMENTWISE_GROUPS, Math.ceil((rows * cols) / GRAD_WORKGROUP)), 1, 1],
    workgroupSize: [GRAD_WORKGROUP, 1, 1],
    size: true,
    getUserCode: () => `
  fn main(first : i32) {
    let step = i32(numWorkgroups.x) * ${GRAD_WORKGROUP};
    for (var index = first; index < uniforms.size; index = index + step) {
      let cols = uniforms.xShape[1];
      let row = index / cols;
      let col = index - row * cols;
      let t = Target[row];
      var g = 0.0;
      if (t >= 0 && t < cols) {
        g = exp(X[index] - Rows[row * 2]);
        if (t == col) {
          g = g - 1.0;
        }
      }
      result[index] = g * DY[0] / f32(uniforms.xShape[0]);
    }
  }`,
  };
}

/**
 * Per-row log-sum-exp and loss of logits [N,V] against int32 targets [N], packed as [N,2]
 * (column 0: log-sum-exp, column 1: loss). One dispatch.
 */
export function webgpuCrossEntropyRows(logits: tf.Tensor2D, targets: tf.Tensor1D): tf.Tensor2D {
  return runProgram(rowsProgram(logits.shape[0]), [logits, targets]) as tf.Tensor2D;
}

/** The mean loss over the rows of webgpuCrossEntropyRows's output, as a scalar. One dispatch. */
export function webgpuCrossEntropyMean(rows: tf.Tensor2D): tf.Scalar {
  return tf.reshape(runProgram(meanProgram(), [rows]), []) as tf.Scalar;
}

/**
 * Gradient of the mean cross-entropy with respect to the logits, (softmax - oneHot) * dy / N,
 * from the log-sum-exp in webgpuCrossEntropyRows's output and the scalar upstream gradient dy.
 * One dispatch.
 */
export function webgpuCrossEntropyGrad(
  logits: tf.Tensor2D,
  targets: tf.Tensor1D,
  rows: tf.Tensor2D,
  dy: tf.Scalar,
): tf.Tensor2D {
  const [n, v] = logits.shape;
  return runProgram(gradProgram(n, v), [logits, targets, rows, dy]) as tf.Tensor2D;
}
