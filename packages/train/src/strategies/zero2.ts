// ZeRO stage 2: optimizer state and gradients partitioned; each block's gradients are
// reduce-scattered as backward produces them (see sharded.ts).
import { ShardedStrategy, type ShardComm, type ShardedStrategyOptions } from './sharded.ts';

export class Zero2Strategy extends ShardedStrategy {
  constructor(comm: ShardComm, opts: ShardedStrategyOptions = {}) {
    super(comm, 2, opts);
  }
}
