// LayerNorm over the last axis of x [N,C] (gain g, shift b) on WebGPU, as three programs:
//   forward        y = (x - mean) * rstd * g + b                       one dispatch
//   input grad     dx = rstd * (dxh - mean(dxh) - xh * mean(dxh * xh)),  dxh = dy * g
//                                                                       one dispatch
//   param grads    [dg; db] = column sums of [dy * xh; dy]  -> [2,C]    one dispatch
// where xh = (x - mean) * rstd. tfjs ops need ~10 kernels forward and ~15 backward.
//
// The row kernels run one workgroup per row and reduce in shared memory: the mean first, then
// the variance of the centred values (two passes, as the cpu path does, rather than sum and
// sum of squares, whose difference loses digits when |mean| >> std). Nothing is saved between
// forward and backward: both backward kernels recompute mean and rstd from x, which costs a
// re-read of x but no extra dispatch and no extra tensor held across the step. The column
// kernel recomputes the statistics of each block of 256 rows (one row per invocation) into
// shared memory, then sums its tile of columns over those rows as in column-sum.ts.
import type * as tf from '@tensorflow/tfjs-core';
import { flatDispatch, runProgram, type WebGPUProgram } from './program.ts';
import { COLUMN_WORKGROUP, columnTile, laneReduceSnippet, rowReduceSnippet, rowWorkgroup } from './workgroup-reduce.ts';

/** WGSL: mean and rstd of the row at `base`, computed by the whole workgroup (wg invocations). */
function rowStatsSnippet(wg: number): string {
  return `
  ${rowReduceSnippet('rowSum', 'f32', wg, 'sum')}
  ${rowReduceSnippet('rowSum2', 'vec2<f32>', wg, 'sum')}
  fn rowStats(base : i32, cols : i32, live : bool, tid : i32) -> vec2<f32> {
    var s = 0.0;
    if (live) {
      for (var c = tid; c < cols; c = c + ${wg}) {
        s = s + X[base + c];
      }
    }
    let mean = rowSumReduce(s, tid) / f32(cols);
    var q = 0.0;
    if (live) {
      for (var c = tid; c < cols; c = c + ${wg}) {
        let d = X[base + c] - mean;
        q = q + d * d;
      }
    }
    return vec2<f32>(mean, 1.0 / sqrt(rowSumReduce(q, tid) / f32(cols) + uniforms.eps));
  }`;
}

function rowProgram(
  rows: number,
  cols: number,
  key: string,
  inputs: string[],
  body: (wg: number) => string,
): WebGPUProgram {
  const wg = rowWorkgroup(cols);
  return {
    variableNames: inputs,
    outputShape: [rows, cols],
    shaderKey: `zeroringLayerNorm${key}_${wg}`,
    dispatchLayout: { x: [0, 1] },
    dispatch: flatDispatch(rows * wg, wg),
    workgroupSize: [wg, 1, 1],
    uniforms: 'eps : f32,',
    getUserCode: () => `
  ${rowStatsSnippet(wg)}
  fn main(index : i32) {
    let rows = uniforms.xShape[0];
    let cols = uniforms.xShape[1];
    let row = index / ${wg};
    let tid = i32(localIndex);
    let live = row < rows;
    let base = row * cols;
    let stats = rowStats(base, cols, live, tid);
    let mean = stats.x;
    let rstd = stats.y;
    ${body(wg)}
  }`,
  };
}

const forwardBody = (wg: number): string => `
    if (live) {
      for (var c = tid; c < cols; c = c + ${wg}) {
        result[base + c] = (X[base + c] - mean) * rstd * G[c] + Shift[c];
      }
    }`;

const inputGradBody = (wg: number): string => `
    var m = vec2<f32>(0.0, 0.0);
    if (live) {
      for (var c = tid; c < cols; c = c + ${wg}) {
        let xh = (X[base + c] - mean) * rstd;
        let dxh = DY[base + c] * G[c];
        m = m + vec2<f32>(dxh, dxh * xh);
      }
    }
    m = rowSum2Reduce(m, tid) / f32(cols);
    if (live) {
      for (var c = tid; c < cols; c = c + ${wg}) {
        let xh = (X[base + c] - mean) * rstd;
        let dxh = DY[base + c] * G[c];
        result[base + c] = (dxh - m.x - xh * m.y) * rstd;
      }
    }`;

function paramGradsProgram(cols: number): WebGPUProgram {
  const tile = columnTile(cols);
  const lanes = COLUMN_WORKGROUP / tile;
  return {
    variableNames: ['X', 'DY'],
    outputShape: [2, cols],
    shaderKey: `zeroringLayerNormParamGrads_${tile}`,
    dispatchLayout: { x: [0, 1] },
    dispatch: [Math.ceil(cols / tile), 1, 1],
    workgroupSize: [COLUMN_WORKGROUP, 1, 1],
    uniforms: 'eps : f32,',
    getUserCode: () => `
  var<workgroup> blockStats : array<vec2<f32>, ${COLUMN_WORKGROUP}>;
  ${laneReduceSnippet('partial', 'vec2<f32>', tile)}
  fn main(index : i32) {
    let rows = uniforms.xShape[0];
    let cols = uniforms.xShape[1];
    let tid = i32(localIndex);
    let col = i32(workgroupId.x) * ${tile} + tid % ${tile};
    var acc = vec2<f32>(0.0, 0.0);
    for (var r0 = 0; r0 < rows; r0 = r0 + ${COLUMN_WORKGROUP}) {
      // Statistics of rows r0 .. r0 + 255, one row per invocation.
      let r = r0 + tid;
      var st = vec2<f32>(0.0, 0.0);
      if (r < rows) {
        var s = 0.0;
        for (var k = 0; k < cols; k = k + 1) {
          s = s + X[r * cols + k];
        }
        let mean = s / f32(cols);
        var q = 0.0;
        for (var k = 0; k < cols; k = k + 1) {
          let d = X[r * cols + k] - mean;
          q = q + d * d;
        }
        st = vec2<f32>(mean, 1.0 / sqrt(q / f32(cols) + uniforms.eps));
      }
      blockStats[tid] = st;
      workgroupBarrier();
      if (col < cols) {
        let end = min(${COLUMN_WORKGROUP}, rows - r0);
        for (var i = tid / ${tile}; i < end; i = i + ${lanes}) {
          let at = (r0 + i) * cols + col;
          let dy = DY[at];
          acc = acc + vec2<f32>(dy * (X[at] - blockStats[i].x) * blockStats[i].y, dy);
        }
      }
      workgroupBarrier();
    }
    partialReduce(acc, tid);
    if (tid < ${tile} && col < cols) {
      result[col] = partial[tid].x;
      result[cols + col] = partial[tid].y;
    }
  }`,
  };
}

const eps = (value: number) => [{ type: 'float32' as const, data: [value] }];

/** LayerNorm of x [N,C] over its last axis with gain g [C] and shift b [C]: one dispatch. */
export function webgpuLayerNorm(x: tf.Tensor2D, g: tf.Tensor, b: tf.Tensor, epsilon: number): tf.Tensor2D {
  const [rows, cols] = x.shape;
  const program = rowProgram(rows, cols, 'Forward', ['X', 'G', 'Shift'], forwardBody);
  return runProgram(program, [x, g, b], eps(epsilon)) as tf.Tensor2D;
}

/** Gradient of LayerNorm with respect to x, given the upstream gradient dy [N,C]: one dispatch. */
export function webgpuLayerNormInputGrad(x: tf.Tensor2D, g: tf.Tensor, dy: tf.Tensor2D, epsilon: number): tf.Tensor2D {
  const [rows, cols] = x.shape;
  const program = rowProgram(rows, cols, 'InputGrad', ['X', 'G', 'DY'], inputGradBody);
  return runProgram(program, [x, g, dy], eps(epsilon)) as tf.Tensor2D;
}

/** Gradients of LayerNorm's gain and shift, packed as [2,C]: row 0 is dg, row 1 is db. One dispatch. */
export function webgpuLayerNormParamGrads(x: tf.Tensor2D, dy: tf.Tensor2D, epsilon: number): tf.Tensor2D {
  return runProgram(paramGradsProgram(x.shape[1]), [x, dy], eps(epsilon)) as tf.Tensor2D;
}
