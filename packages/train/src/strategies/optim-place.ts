// Where the optimizer of a rank's shard runs: on the device, or on the host (offload).
import * as tf from '@tensorflow/tfjs-core';
import { DeviceShardAdamW, HostShardAdamW } from './optim-shard.ts';
import { FlatShardAdamW } from './optim-shard-flat.ts';
import type { PlacedShardOptimizer, ShardContext, ShardOptimizerPlace } from './parts.ts';

/**
 * The optimizer on the device: moments as device tensors over the shard, updated by one fused
 * WGSL program on WebGPU (optim-shard-flat.ts) and by tfjs ops elsewhere.
 */
export const onDevice: ShardOptimizerPlace = async (ctx: ShardContext, _flat, cfg): Promise<PlacedShardOptimizer> => {
  const L = ctx.part.shardLength;
  const ranges = ctx.part.decayRanges(ctx.comm.rank);
  const opt = tf.getBackend() === 'webgpu' ? new FlatShardAdamW(L, ranges, cfg) : new DeviceShardAdamW(L, ranges, cfg);
  ctx.mem.alloc('optimizer', 'device', 8 * L, 'adam m, v shard');
  return { opt };
};

/**
 * The optimizer on the host (offload): the shard's fp32 master parameters, gradients and moments
 * in the kernel's memory, so the reduced gradients land where the update reads them.
 */
export const onHost: ShardOptimizerPlace = async (ctx: ShardContext, flat, cfg): Promise<PlacedShardOptimizer> => {
  const { part, comm, mem } = ctx;
  const L = part.shardLength;
  const host = await HostShardAdamW.create(L, part.decayRanges(comm.rank), cfg);
  part.shard(flat, comm.rank, host.params);
  mem.alloc('params', 'host', 4 * L, 'fp32 master shard');
  mem.alloc('grads', 'host', 4 * L, 'gradient shard');
  mem.alloc('optimizer', 'host', 8 * L, 'adam m, v shard');
  return { opt: host, master: host.params, gradBuffer: host.grads };
};
