// Kernels tfjs-backend-wasm lacks that training needs. Registered once, before the first op.
import { getKernel, registerKernel, type KernelConfig } from '@tensorflow/tfjs-core';
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
  return added;
}
