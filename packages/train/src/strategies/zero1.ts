// ZeRO stage 1: optimizer state partitioned across ranks (see sharded.ts for how).
import { ShardedStrategy, type ShardComm, type ShardedStrategyOptions } from './sharded.ts';

export class Zero1Strategy extends ShardedStrategy {
  constructor(comm: ShardComm, opts: ShardedStrategyOptions = {}) {
    super(comm, 1, opts);
  }
}
