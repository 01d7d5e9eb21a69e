// ZeRO stage 1 (Rajbhandari et al., "ZeRO: Memory Optimizations Toward Training Trillion
// Parameter Models"): the optimizer state is partitioned across ranks, nothing else.
//   parameters  replicated on every rank; after the update, all-gathered from the updated shards
//   gradients   summed locally during backward, reduce-scattered once at the end of the step
//   optimizer   AdamW over this rank's shard, on the device, or on the host with offload
// Model state per rank (fp32 Adam, Ψ parameters, N ranks): 4Ψ + 4Ψ + 8Ψ/N.
import { ReduceScatterAtStep } from './grads-at-step.ts';
import { onDevice, onHost } from './optim-place.ts';
import { ReplicatedFromShards } from './params-republished.ts';
import type { ZeroComposition } from './parts.ts';

export const ZERO1: ZeroComposition = {
  name: 'zero1',
  stage: 1,
  params: ReplicatedFromShards,
  grads: ReduceScatterAtStep,
  optimizer: { device: onDevice, host: onHost },
};
