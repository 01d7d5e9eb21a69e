// Runs our own WGSL programs through tfjs-backend-webgpu's program interface, so that their
// inputs and outputs stay ordinary tfjs tensors (tracked, tidied, usable by every other op).
// A program's code follows tfjs's conventions: inputs are the arrays named in variableNames,
// the output is `result`, program uniforms are fields of `uniforms`, and `main(index)` runs
// once per invocation of a flat dispatch.
import * as tf from '@tensorflow/tfjs-core';
import type { WebGPUBackend, WebGPUProgram } from '@tensorflow/tfjs-backend-webgpu';

export type { WebGPUProgram };

/** A program's own uniforms, in the order of its `uniforms` declaration. */
export type ProgramUniforms = Array<{ type: 'int32' | 'float32' | 'uint32'; data: number[] }>;

/** The active tfjs backend when it is WebGPU, else undefined. */
export function activeWebGPU(): WebGPUBackend | undefined {
  return tf.getBackend() === 'webgpu' ? (tf.backend() as unknown as WebGPUBackend) : undefined;
}

/** True when the active backend runs this package's WGSL programs. */
export function webgpuKernelsActive(): boolean {
  return activeWebGPU() !== undefined;
}

/** Runs `program` on `inputs` and returns its output as a tensor of the program's outputShape. */
export function runProgram(
  program: WebGPUProgram,
  inputs: tf.Tensor[],
  uniforms?: ProgramUniforms,
  dtype: tf.DataType = 'float32',
): tf.Tensor {
  const backend = activeWebGPU();
  if (!backend) {
    throw new Error(`the WGSL program ${program.shaderKey} needs the webgpu backend, not ${tf.getBackend()}`);
  }
  const info = backend.runWebGPUProgram(program, inputs, dtype, uniforms);
  return tf.engine().makeTensorFromTensorInfo(info);
}

/** Workgroups for `n` invocations of `size` each, laid out as tfjs's flat dispatches expect. */
export function flatDispatch(n: number, size: number): [number, number, number] {
  const groups = Math.ceil(n / size);
  // WebGPU caps each dispatch dimension at 65535 workgroups; tfjs's getGlobalIndex folds y and z back in.
  if (groups <= 65535) return [groups, 1, 1];
  const y = Math.ceil(groups / 65535);
  return [65535, y, 1];
}
