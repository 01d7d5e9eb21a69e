// AdamW over a whole flat parameter group in one WGSL dispatch: the parameters, first and second
// moments packed in one state tensor [p | m | v] (a program has one output, so the three move
// together), the flat gradient, and the stats tensor of the gradient norm (norm.ts), from which
// the clip coefficient and the finite flag are read on the device, so nothing is read back.
//
// The arithmetic is torch.optim.AdamW's (foreach=False) in the order the tfjs-ops update of
// @zeroring/train takes it, one float32 rounding per op:
//   g  <- g * scale, then g * coef when clipping and coef < 1
//   p  <- p * (1 - lr * wd)          only below decayEnd: the group's decaying parameters lead
//   m  <- m + (g - m) * (1 - b1)
//   v  <- v * b2 + (g * g) * (1 - b2)
//   p  <- p - (m / (sqrt(v) / sqrt(1 - b2^t) + eps)) * (lr / (1 - b1^t))
// The host works the step's scalars out in float64; as uniforms they are float32, as the scalar
// tensors of the tfjs-ops update are. With `gate`, a gradient the norm found non-finite leaves the
// state as it was (a skipped step), decided on the device.
//
// Which elements decay is one boundary (decayEnd) for a group laid out with its decaying
// parameters first, or a bit mask (one bit per element, 32 to an int32) for a range that mixes
// them in any order, as a ZeRO shard of the model does.
import type * as tf from '@tensorflow/tfjs-core';
import { NORM_STATS } from './norm.ts';
import { flatDispatch, runProgram, type WebGPUProgram } from './program.ts';

/** One step's scalars, worked out on the host in float64. */
export interface FlatAdamWStep {
  /** Elements [0, decayEnd) decay, the rest do not. */
  decayEnd: number;
  decayFactor: number;
  beta1: number;
  beta2: number;
  eps: number;
  bc2Sqrt: number;
  stepSize: number;
  /** Multiplies the gradient first (1 / micro-batches, say). */
  gradScale: number;
  /** Multiply by the stats' clip coefficient when it is below 1. */
  clip: boolean;
  /** Keep the state unchanged when the stats say the gradient is not finite. */
  gate: boolean;
}

const WG = 64;

function adamwProgram(n: number, masked: boolean): WebGPUProgram {
  const decays = masked ? '((D[i >> 5u] >> u32(i & 31)) & 1) != 0' : 'i < uniforms.decayEnd';
  return {
    variableNames: masked ? ['S', 'G', 'Stats', 'D'] : ['S', 'G', 'Stats'],
    outputShape: [3 * n],
    shaderKey: masked ? 'zeroring-flat-adamw-masked' : 'zeroring-flat-adamw',
    dispatchLayout: { x: [0] },
    dispatch: flatDispatch(n, WG),
    workgroupSize: [WG, 1, 1],
    uniforms:
      'n : i32, decayEnd : i32, clip : i32, gate : i32, decayFactor : f32, beta1c : f32, beta2 : f32, ' +
      'beta2c : f32, bc2Sqrt : f32, eps : f32, stepSize : f32, gradScale : f32,',
    getUserCode: () => `
  fn main(i : i32) {
    let n = uniforms.n;
    if (i >= n) { return; }
    let p0 = S[i];
    let m0 = S[n + i];
    let v0 = S[2 * n + i];
    if (uniforms.gate != 0 && Stats[${NORM_STATS.finite}] == 0.0) {
      result[i] = p0;
      result[n + i] = m0;
      result[2 * n + i] = v0;
      return;
    }
    var g = G[i] * uniforms.gradScale;
    let coef = Stats[${NORM_STATS.coef}];
    if (uniforms.clip != 0 && coef < 1.0) { g = g * coef; }
    var p = p0;
    if (${decays}) { p = p0 * uniforms.decayFactor; }
    let m = m0 + (g - m0) * uniforms.beta1c;
    let v = v0 * uniforms.beta2 + (g * g) * uniforms.beta2c;
    let denom = sqrt(v) / uniforms.bc2Sqrt + uniforms.eps;
    result[i] = p - (m / denom) * uniforms.stepSize;
    result[n + i] = m;
    result[2 * n + i] = v;
  }`,
  };
}

/** The decay mask of webgpuFlatAdamW: bit i of the int32 array is set when element i decays. */
export function decayMaskBits(length: number, ranges: ReadonlyArray<readonly [number, number]>): Int32Array {
  const bits = new Int32Array(Math.max(1, Math.ceil(length / 32)));
  for (const [start, end] of ranges) for (let i = start; i < end; i++) bits[i >> 5] |= 1 << (i & 31);
  return bits;
}

/**
 * The next packed state [p | m | v] (3n elements) from `state`, the flat gradient `grad` (n) and
 * the norm's `stats` (norm.ts). Elements decay below s.decayEnd, or where `decayMask` (an int32
 * tensor of decayMaskBits) has their bit set when it is given. The inputs stay the caller's.
 * Needs the webgpu backend.
 */
export function webgpuFlatAdamW(
  state: tf.Tensor,
  grad: tf.Tensor,
  stats: tf.Tensor,
  s: FlatAdamWStep,
  decayMask?: tf.Tensor,
): tf.Tensor {
  const n = grad.size;
  if (decayMask && (decayMask.dtype !== 'int32' || decayMask.size < Math.ceil(n / 32))) {
    throw new Error(
      `flat AdamW decay mask is ${decayMask.dtype}[${decayMask.size}], expected int32[${Math.ceil(n / 32)}]`,
    );
  }
  if (state.size !== 3 * n) {
    throw new Error(`flat AdamW state has ${state.size} elements, expected 3 x ${n} (parameters, m, v)`);
  }
  if (stats.size !== NORM_STATS.length) {
    throw new Error(`flat AdamW stats have ${stats.size} elements, expected ${NORM_STATS.length}`);
  }
  const inputs = decayMask ? [state, grad, stats, decayMask] : [state, grad, stats];
  return runProgram(adamwProgram(n, decayMask !== undefined), inputs, [
    { type: 'int32', data: [n] },
    { type: 'int32', data: [s.decayEnd] },
    { type: 'int32', data: [s.clip ? 1 : 0] },
    { type: 'int32', data: [s.gate ? 1 : 0] },
    { type: 'float32', data: [s.decayFactor] },
    { type: 'float32', data: [1 - s.beta1] },
    { type: 'float32', data: [s.beta2] },
    { type: 'float32', data: [1 - s.beta2] },
    { type: 'float32', data: [s.bc2Sqrt] },
    { type: 'float32', data: [s.eps] },
    { type: 'float32', data: [s.stepSize] },
    { type: 'float32', data: [s.gradScale] },
  ]);
}
