// Kernels tfjs-backend-wasm lacks that training needs, and three it has but runs far too
// slowly for training (BatchMatMul, Slice, Identity). Registered once, before the first op.
import { getKernel, registerKernel, unregisterKernel, type KernelConfig } from '@tensorflow/tfjs-core';
import { fastBatchMatMulConfig, isFastBatchMatMul } from './batch-mat-mul.ts';
import { isSharedIdentity, sharedIdentityConfig } from './identity.ts';
import { inPlaceSliceConfig, isInPlaceSlice } from './slice.ts';
import { unsortedSegmentSumConfig } from './unsorted-segment-sum.ts';

export const extraWasmKernels: KernelConfig[] = [unsortedSegmentSumConfig];

export function registerExtraWasmKernels(): string[] {
  const added: string[] = [];
  for (const config of extraWasmKernels) {
    // A later tfjs-backend-wasm that ships its own kernel wins.
    if (getKernel(config.kernelName, 'wasm') !== undefined) continue;
    registerKernel(config);
    added.push(config.kernelName);
  }
  const stock = getKernel('BatchMatMul', 'wasm');
  if (stock && !isFastBatchMatMul(stock)) {
    unregisterKernel('BatchMatMul', 'wasm');
    registerKernel(fastBatchMatMulConfig(stock));
    added.push('BatchMatMul (XNNPACK routing)');
  }
  const stockSlice = getKernel('Slice', 'wasm');
  if (stockSlice && !isInPlaceSlice(stockSlice)) {
    unregisterKernel('Slice', 'wasm');
    registerKernel(inPlaceSliceConfig(stockSlice));
    added.push('Slice (in place)');
  }
  const stockIdentity = getKernel('Identity', 'wasm');
  if (stockIdentity && !isSharedIdentity(stockIdentity)) {
    unregisterKernel('Identity', 'wasm');
    registerKernel(sharedIdentityConfig(stockIdentity));
    added.push('Identity (shared memory)');
  }
  return added;
}
