// @zeroring/backend: choose and initialise the tfjs compute backend (DESIGN.md, Layout).
export { initBackend, initNamedBackend } from './init.ts';
export type { BackendInfo, BackendName, InitBackendOptions } from './init.ts';
export type { AdapterInfo } from './webgpu.ts';
export { probeWebGPUAdapter, probeWebGPUAdapterInChild } from './webgpu.ts';
export { gpuWorkCounts, gpuWorkBetween, type GpuWorkCounts } from './webgpu-counters.ts';
export { registerAllGradients } from './gradients.ts';
export { assertSingleTfjsCore, TfjsCoreMismatchError, EXPECTED_TFJS_CORE } from './single-core.ts';
export { registerExtraWasmKernels, extraWasmKernels } from './wasm-kernels/index.ts';
export { tensorflowInstalled, TENSORFLOW_PACKAGES } from './tensorflow.ts';
export type { BackendLogger } from './logger.ts';
export {
  BACKEND_KINDS,
  BackendError,
  BackendUnavailableError,
  TensorflowNotInstalledError,
  UnknownBackendError,
  type BackendKind,
} from './errors.ts';
// The one tfjs-core instance every backend here registers with, for code (scripts,
// benchmarks) that cannot resolve @tensorflow/tfjs-core from where it lives.
export * as tf from '@tensorflow/tfjs-core';
export { copyToHost, runHostKernel, HOST_MEMORY_BACKENDS } from './host-memory.ts';
export { webgpuKernelsActive } from './webgpu-kernels/program.ts';
export {
  attentionTiles,
  flashAttentionBackward,
  flashAttentionForward,
  flashAttentionSupports,
  type FlashAttentionShape,
} from './webgpu-kernels/attention.ts';
