// Identity (tf.clone) for the wasm backend, sharing the source's memory.
//
// The stock kernel copies the whole tensor into a new heap block. tfjs clones every tensor a
// kernel saves for its gradient (inside tf.grads and on a kept tape, packages/train/src/tape.ts),
// so on wasm each training step copied every saved activation once: 1.7 % of a tiny-GPT step's
// CPU profile (timed steps moved by about 1 %, within noise), and twice the memory for what the
// tape keeps. Tensors are immutable, so the clone can
// share the data and count one more reference, exactly as tfjs-backend-cpu's Identity and the
// wasm backend's own Reshape do. (Nothing in zeroring writes into a tensor's heap memory after
// its kernel returned: host kernels write only to fresh outputs, see host-memory.ts.)
import type { KernelConfig, KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

const SHARED = Symbol.for('zeroring.sharedIdentity');

export function sharedIdentityConfig(stock: KernelConfig): KernelConfig {
  const kernelFunc = (args: { inputs: { x: TensorInfo }; backend: BackendWasm }): TensorInfo => {
    const {
      inputs: { x },
      backend,
    } = args;
    if (x.dtype === 'string') return stock.kernelFunc(args as unknown as Parameters<KernelFunc>[0]) as TensorInfo;
    backend.incRef(x.dataId);
    return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
  };
  return { ...stock, kernelFunc: kernelFunc as unknown as KernelFunc, [SHARED]: true } as KernelConfig;
}

export function isSharedIdentity(config: KernelConfig | undefined): boolean {
  return Boolean(config && (config as unknown as Record<symbol, unknown>)[SHARED]);
}
