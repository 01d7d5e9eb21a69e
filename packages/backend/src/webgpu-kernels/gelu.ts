// GPT-2's tanh GELU on WebGPU, forward and gradient, each one elementwise dispatch (tfjs ops
// take ~6 kernels forward and ~8 backward). Same formula as the cpu path in @zeroring/gpt:
//   gelu(x) = 0.5 x (1 + tanh(z)) = x * sigmoid(2z),  z = sqrt(2/pi) (x + 0.044715 x^3)
//   gelu'(x) = s + x s (1 - s) u',  s = sigmoid(u),  u = 2z,  u' = 2 sqrt(2/pi) (1 + 3 * 0.044715 x^2)
// The gradient recomputes s from the pre-activation x, so the forward saves only x.
import * as tf from '@tensorflow/tfjs-core';
import { runProgram, type WebGPUProgram } from './program.ts';
import { MAX_ELEMENTWISE_GROUPS } from './workgroup-reduce.ts';

const WORKGROUP = 256;
const K = 2 * Math.sqrt(2 / Math.PI);
const A = 0.044715;

const SIGMOID = `
  fn geluSigmoid(x : f32) -> f32 {
    let u = x * (${K} + ${K * A} * x * x);
    return 1.0 / (1.0 + exp(-u));
  }`;

function elementwise(key: string, inputs: string[], size: number, body: string): WebGPUProgram {
  return {
    variableNames: inputs,
    outputShape: [size],
    shaderKey: `zeroringGelu${key}`,
    dispatchLayout: { x: [0] },
    dispatch: [Math.min(MAX_ELEMENTWISE_GROUPS, Math.ceil(size / WORKGROUP)), 1, 1],
    workgroupSize: [WORKGROUP, 1, 1],
    size: true,
    getUserCode: () => `
  ${SIGMOID}
  fn main(first : i32) {
    let step = i32(numWorkgroups.x) * ${WORKGROUP};
    for (var index = first; index < uniforms.size; index = index + step) {
      let x = X[index];
      let s = geluSigmoid(x);
      ${body}
    }
  }`,
  };
}

/** GELU of x (any shape), one dispatch. */
export function webgpuGelu<T extends tf.Tensor>(x: T): T {
  const out = runProgram(elementwise('Forward', ['X'], x.size, 'result[index] = x * s;'), [x]);
  return tf.reshape(out, x.shape) as T;
}

/** dy * gelu'(x) for the pre-activation x and upstream gradient dy (same shape), one dispatch. */
export function webgpuGeluGrad<T extends tf.Tensor>(x: T, dy: T): T {
  const body = `result[index] = DY[index] * (s + x * s * (1.0 - s) * (${K} + ${3 * K * A} * x * x));`;
  const out = runProgram(elementwise('Grad', ['X', 'DY'], x.size, body), [x, dy]);
  return tf.reshape(out, x.shape) as T;
}
