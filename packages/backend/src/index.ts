// @zeroring/backend: choose and initialise the tfjs compute backend (DESIGN.md, Layout).
export { initBackend, initNamedBackend } from './init.ts';
export type { BackendInfo, BackendName, InitBackendOptions } from './init.ts';
export type { AdapterInfo } from './webgpu.ts';
export { probeWebGPUAdapter, probeWebGPUAdapterInChild } from './webgpu.ts';
export { tiledMatMul, tiledMatMulWithGrad } from './webgpu-kernels/matmul.ts';
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
export { decayMaskBits, webgpuFlatAdamW, type FlatAdamWStep } from './webgpu-kernels/adamw.ts';
export { webgpuScaledNorm, NORM_STATS } from './webgpu-kernels/norm.ts';
// Our own WGSL programs for the webgpu backend (each one or two dispatches where tfjs ops take many).
export { webgpuKernelsActive } from './webgpu-kernels/program.ts';
export { webgpuColumnSum } from './webgpu-kernels/column-sum.ts';
export { webgpuEmbeddingGather, webgpuEmbeddingGrad } from './webgpu-kernels/embedding.ts';
export { webgpuLayerNorm, webgpuLayerNormInputGrad, webgpuLayerNormGainGrad } from './webgpu-kernels/layer-norm.ts';
export { webgpuGelu, webgpuGeluGrad } from './webgpu-kernels/gelu.ts';
export {
  webgpuCrossEntropyRows,
  webgpuCrossEntropyMean,
  webgpuCrossEntropyGrad,
} from './webgpu-kernels/cross-entropy.ts';
export {
  attentionTiles,
  flashAttentionBackward,
  flashAttentionForward,
  flashAttentionSupports,
  type FlashAttentionShape,
} from './webgpu-kernels/attention.ts';
export { registerMatMul, REGISTER_TILES, type RegisterTile } from './webgpu-kernels/matmul-register.ts';
export {
  matMulAuto,
  matMulChoices,
  settleMatMulChoices,
  webgpuIdle,
  type MatMulAutoOptions,
  type MatMulChoice,
  type MatMulMode,
} from './webgpu-kernels/matmul-choice.ts';
