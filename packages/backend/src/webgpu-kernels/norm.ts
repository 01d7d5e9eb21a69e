// The squared L2 norm of a flat float32 tensor, scaled, in two WGSL dispatches, for clipping by
// global norm without a read-back: the clip coefficient lands in a small device tensor that the
// AdamW program (adamw.ts) reads.
//
//   pass 1: a fixed number of workgroups each sums (x * scale)^2 over a grid-strided share of the
//           input and counts non-finite elements (NaN or ±Inf, by their exponent bits, which no
//           compiler may fold away as it may fold x != x); one partial sum and count each
//   pass 2: one workgroup adds the partials and writes
//             [norm, clip coefficient, finite (1 or 0), squared norm]
//           with torch.nn.utils.clip_grad_norm_'s coefficient min(1, maxNorm / (norm + 1e-6)).
//
// x * scale is rounded to float32 before squaring, as tf.mul(g, scale) followed by a norm is.
import type * as tf from '@tensorflow/tfjs-core';
import { runProgram, type WebGPUProgram } from './program.ts';

const WG = 64;
/** Workgroups of pass 1: enough to fill a GPU, few enough for one workgroup to add in pass 2. */
const PARTIALS = 256;

/** Layout of the stats tensor the norm writes and AdamW reads. */
export const NORM_STATS = { norm: 0, coef: 1, finite: 2, squared: 3, length: 4 } as const;

const reduceInWorkgroup = (v: string): string => `
    ${v}[localIndex] = sum;
    bad[localIndex] = count;
    workgroupBarrier();
    for (var s = ${WG / 2}u; s > 0u; s = s >> 1u) {
      if (localIndex < s) {
        ${v}[localIndex] = ${v}[localIndex] + ${v}[localIndex + s];
        bad[localIndex] = bad[localIndex] + bad[localIndex + s];
      }
      workgroupBarrier();
    }`;

function partialsProgram(groups: number): WebGPUProgram {
  return {
    variableNames: ['X'],
    outputShape: [2 * groups],
    shaderKey: 'zeroring-sqnorm-partials',
    dispatchLayout: { x: [0] },
    dispatch: [groups, 1, 1],
    workgroupSize: [WG, 1, 1],
    uniforms: 'n : i32, scale : f32,',
    getUserCode: () => `
  var<workgroup> acc : array<f32, ${WG}>;
  var<workgroup> bad : array<f32, ${WG}>;
  fn isNonFinite(x : f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) == 0x7f800000u;
  }
  fn main(index : i32) {
    let stride = i32(numWorkgroups.x) * ${WG};
    var sum = 0.0;
    var count = 0.0;
    for (var i = index; i < uniforms.n; i = i + stride) {
      let g = X[i] * uniforms.scale;
      if (isNonFinite(g)) { count = count + 1.0; }
      sum = sum + g * g;
    }
    ${reduceInWorkgroup('acc')}
    if (localIndex == 0u) {
      result[workgroupId.x] = acc[0];
      result[numWorkgroups.x + workgroupId.x] = bad[0];
    }
  }`,
  };
}

function finishProgram(): WebGPUProgram {
  return {
    variableNames: ['P'],
    outputShape: [NORM_STATS.length],
    shaderKey: 'zeroring-sqnorm-finish',
    dispatchLayout: { x: [0] },
    dispatch: [1, 1, 1],
    workgroupSize: [WG, 1, 1],
    uniforms: 'groups : i32, maxNorm : f32,',
    getUserCode: () => `
  var<workgroup> acc : array<f32, ${WG}>;
  var<workgroup> bad : array<f32, ${WG}>;
  fn main(index : i32) {
    var sum = 0.0;
    var count = 0.0;
    for (var i = index; i < uniforms.groups; i = i + ${WG}) {
      sum = sum + P[i];
      count = count + P[uniforms.groups + i];
    }
    ${reduceInWorkgroup('acc')}
    if (localIndex == 0u) {
      let squared = acc[0];
      let norm = sqrt(squared);
      var coef = 1.0;
      if (uniforms.maxNorm > 0.0) { coef = min(1.0, uniforms.maxNorm / (norm + 1e-6)); }
      result[${NORM_STATS.norm}] = norm;
      result[${NORM_STATS.coef}] = coef;
      result[${NORM_STATS.finite}] = select(1.0, 0.0, bad[0] > 0.0);
      result[${NORM_STATS.squared}] = squared;
    }
  }`,
  };
}

/**
 * [norm, clip coefficient, finite, squared norm] of `flat * scale` (float32 on the device; a
 * maxNorm of 0 or less means no clipping: coefficient 1). Needs the webgpu backend.
 */
export function webgpuScaledNorm(flat: tf.Tensor, scale: number, maxNorm: number): tf.Tensor {
  const n = flat.size;
  const groups = Math.max(1, Math.min(PARTIALS, Math.ceil(n / WG)));
  const partials = runProgram(
    partialsProgram(groups),
    [flat],
    [
      { type: 'int32', data: [n] },
      { type: 'float32', data: [scale] },
    ],
  );
  const stats = runProgram(
    finishProgram(),
    [partials],
    [
      { type: 'int32', data: [groups] },
      { type: 'float32', data: [maxNorm > 0 ? maxNorm : 0] },
    ],
  );
  partials.dispose();
  return stats;
}
