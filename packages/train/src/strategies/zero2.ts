// ZeRO stage 2: optimizer state and gradients partitioned across ranks.
//   parameters  replicated on every rank; after the update, all-gathered from the updated shards
//   gradients   reduce-scattered block by block as backward produces them; only the shard is kept
//   optimizer   AdamW over this rank's shard, on the device, or on the host with offload
// Model state per rank (fp32 Adam, Ψ parameters, N ranks): 4Ψ + 4Ψ/N + 8Ψ/N.
import { ReduceScatterPerBlock } from './grads-per-block.ts';
import { onDevice, onHost } from './optim-place.ts';
import { ReplicatedFromShards } from './params-republished.ts';
import type { ZeroComposition } from './parts.ts';

export const ZERO2: ZeroComposition = {
  name: 'zero2',
  stage: 2,
  params: ReplicatedFromShards,
  grads: ReduceScatterPerBlock,
  optimizer: { device: onDevice, host: onHost },
};
