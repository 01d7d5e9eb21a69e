// LayerNorm over the last axis of x [N,C] (gain g, shift b) on WebGPU, as three programs:
//   forward        y = (x - mean) * rstd * g + b                       one dispatch
//   input grad     dx = rstd * (dxh - mean(dxh) - xh * mean(dxh * xh)),  dxh = dy * g
//                                                                       one dispatch
//   gain grad      dg = column sums of dy * xh -> [C]                   one dispatch
// where xh = (x - mean) * rstd; the shift's gradient is the column sum of dy (column-sum.ts).
// tfjs ops need ~10 kernels forward and ~15 backward. dg and db are two programs rather than
// one writing [2,C]: a program has one output, and splitting it would cost two slice
// dispatches (tfjs-backend-webgpu copies every slice), so separate outputs are cheaper.
//
// The row kernels run one invocation per row, 64 rows to a workgroup, with no shared memory and no
// barriers: on lavapipe (the CPU Vulkan driver CI and the toy model run on) a workgroup per row
// with a tree reduction in shared memory measured ~10x slower, barriers being the expensive part
// there (a hardware GPU would read rows of thousands of values better with a workgroup per row;
// the rows here are the model width, 128..768). Statistics take two passes, the mean and then the
// variance of the centred values (as the cpu path does; sum and sum of squares lose digits when
// |mean| >> std). Nothing is saved between forward and backward: both backward kernels recompute
// mean and rstd from x, a re-read of x instead of an extra dispatch and an extra tensor held
// across the step. The gain-gradient kernel computes the statistics of each block of 256 rows (one
// row per invocation) into shared memory, then sums its tile of columns over them as column-sum.ts
// does.
import type * as tf from '@tensorflow/tfjs-core';
import { flatDispatch, runProgram, type WebGPUProgram } from './program.ts';
import { COLUMN_WORKGROUP, columnTile, laneReduceSnippet } from './workgroup-reduce.ts';

/** Rows per workgroup of the row kernels (one invocation per row). */
const ROW_WORKGROUP = 64;

/** WGSL: mean and rstd of the row of `cols` values at `base` of X, in two passes. */
const ROW_STATS = `
  fn rowStats(base : i32, cols : i32) -> vec2<f32> {
    var s = 0.0;
    for (var k = 0; k < cols; k = k + 1) {
      s = s + X[base + k];
    }
    let mean = s / f32(cols);
    var q = 0.0;
    for (var k = 0; k < cols; k = k + 1) {
      let d = X[base + k] - mean;
      q = q + d * d;
    }
    return vec2<f32>(mean, 1.0 / sqrt(q / f32(cols) + uniforms.eps));
  }`;

function rowProgram(rows: number, cols: number, key: string, inputs: string[], body: string): WebGPUProgram {
  return {
    variableNames: inputs,
    outputShape: [rows, cols],
    shaderKey: `zeroringLayerNorm${key}`,
    dispatchLayout: { x: [0, 1] },
    dispatch: flatDispatch(rows, ROW_WORKGROUP),
    workgroupSize: [ROW_WORKGROUP, 1, 1],
    uniforms: 'eps : f32,',
    getUserCode: () => `
  ${ROW_STATS}
  fn main(row : i32) {
    let rows = uniforms.xShape[0];
    let cols = uniforms.xShape[1];
    if (row < rows) {
      let base = row * cols;
      let stats = rowStats(base, cols);
      let mean = stats.x;
      let rstd = stats.y;
      ${body}
    }
  }`,
  };
}

const FORWARD = `
      for (var c = 0; c < cols; c = c + 1) {
        result[base + c] = (X[base + c] - mean) * rstd * G[c] + Shift[c];
      }`;

const INPUT_GRAD = `
      var m = vec2<f32>(0.0, 0.0);
      for (var c = 0; c < cols; c = c + 1) {
        let dxh = DY[base + c] * G[c];
        m = m + vec2<f32>(dxh, dxh * (X[base + c] - mean) * rstd);
      }
      m = m / f32(cols);
      for (var c = 0; c < cols; c = c + 1) {
        let xh = (X[base + c] - mean) * rstd;
        result[base + c] = (DY[base + c] * G[c] - m.x - xh * m.y) * rstd;
      }`;

function gainGradProgram(cols: number): WebGPUProgram {
  const tile = columnTile(cols);
  const lanes = COLUMN_WORKGROUP / tile;
  return {
    variableNames: ['X', 'DY'],
    outputShape: [cols],
    shaderKey: `zeroringLayerNormGainGrad_${tile}`,
    dispatchLayout: { x: [0] },
    dispatch: [Math.ceil(cols / tile), 1, 1],
    workgroupSize: [COLUMN_WORKGROUP, 1, 1],
    uniforms: 'eps : f32,',
    getUserCode: () => `
  var<workgroup> blockStats : array<vec2<f32>, ${COLUMN_WORKGROUP}>;
  ${ROW_STATS}
  ${laneReduceSnippet('partial', 'f32', tile)}
  fn main(index : i32) {
    let rows = uniforms.xShape[0];
    let cols = uniforms.xShape[1];
    let tid = i32(localIndex);
    let col = i32(workgroupId.x) * ${tile} + tid % ${tile};
    var acc = 0.0;
    for (var r0 = 0; r0 < rows; r0 = r0 + ${COLUMN_WORKGROUP}) {
      // Statistics of rows r0 .. r0 + ${COLUMN_WORKGROUP - 1}, one row per invocation.
      let r = r0 + tid;
      var st = vec2<f32>(0.0, 0.0);
      if (r < rows) {
        st = rowStats(r * cols, cols);
      }
      blockStats[tid] = st;
      workgroupBarrier();
      if (col < cols) {
        let end = min(${COLUMN_WORKGROUP}, rows - r0);
        for (var i = tid / ${tile}; i < end; i = i + ${lanes}) {
          let at = (r0 + i) * cols + col;
          acc = acc + DY[at] * (X[at] - blockStats[i].x) * blockStats[i].y;
        }
      }
      workgroupBarrier();
    }
    partialReduce(acc, tid);
    if (tid < ${tile} && col < cols) {
      result[col] = partial[tid];
    }
  }`,
  };
}

const eps = (value: number) => [{ type: 'float32' as const, data: [value] }];

/** LayerNorm of x [N,C] over its last axis with gain g [C] and shift b [C]: one dispatch. */
export function webgpuLayerNorm(x: tf.Tensor2D, g: tf.Tensor, b: tf.Tensor, epsilon: number): tf.Tensor2D {
  const [rows, cols] = x.shape;
  const program = rowProgram(rows, cols, 'Forward', ['X', 'G', 'Shift'], FORWARD);
  return runProgram(program, [x, g, b], eps(epsilon)) as tf.Tensor2D;
}

/** Gradient of LayerNorm with respect to x, given the upstream gradient dy [N,C]: one dispatch. */
export function webgpuLayerNormInputGrad(x: tf.Tensor2D, g: tf.Tensor, dy: tf.Tensor2D, epsilon: number): tf.Tensor2D {
  const [rows, cols] = x.shape;
  const program = rowProgram(rows, cols, 'InputGrad', ['X', 'G', 'DY'], INPUT_GRAD);
  return runProgram(program, [x, g, dy], eps(epsilon)) as tf.Tensor2D;
}

/** Gradient of LayerNorm's gain, sum over rows of dy * xh -> [C]. One dispatch. */
export function webgpuLayerNormGainGrad(x: tf.Tensor2D, dy: tf.Tensor2D, epsilon: number): tf.Tensor1D {
  return runProgram(gainGradProgram(x.shape[1]), [x, dy], eps(epsilon)) as tf.Tensor1D;
}
