// ZeRO stage 3: optimizer state, gradients and parameters partitioned; blocks are all-gathered
// (with prefetch) before forward and backward and freed after (see sharded.ts, zero3-gather.ts).
import { ShardedStrategy, type ShardComm, type ShardedStrategyOptions } from './sharded.ts';

export class Zero3Strategy extends ShardedStrategy {
  constructor(comm: ShardComm, opts: ShardedStrategyOptions = {}) {
    super(comm, 3, opts);
  }
}
