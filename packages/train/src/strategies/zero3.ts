// ZeRO stage 3: optimizer state, gradients and parameters partitioned across ranks.
//   parameters  only this rank's shard is kept; each block is all-gathered before forward and
//               again before backward (the next block prefetched), and freed after use
//   gradients   reduce-scattered block by block as backward produces them; only the shard is kept
//   optimizer   AdamW over this rank's shard, on the device, or on the host with offload; the
//               updated shard is what the next gathers read
// Model state per rank (fp32 Adam, Ψ parameters, N ranks): 16Ψ/N, plus one gathered block.
import { ReduceScatterPerBlock } from './grads-per-block.ts';
import { onDevice, onHost } from './optim-place.ts';
import { GatheredPerBlock } from './params-gathered.ts';
import type { ZeroComposition } from './parts.ts';

export const ZERO3: ZeroComposition = {
  name: 'zero3',
  stage: 3,
  params: GatheredPerBlock,
  grads: ReduceScatterPerBlock,
  optimizer: { device: onDevice, host: onHost },
};
