// @zeroring/core: what several packages share and none of them owns: the model contract, seeded
// random numbers, the WebAssembly encoder of the hand-written SIMD kernels, and the process's
// one logger.
export { paramCount, uniqueParams, type Block, type BlockModel, type NamedTensors, type ParamSpec } from './model.ts';
export { Rng, deriveSeed, mulberry32 } from './rng.ts';
export { errorLine, getLogger, logFailure, logFormat, setLogLevel, type Logger } from './logger.ts';
export * as wasm from './wasm-encoding.ts';
