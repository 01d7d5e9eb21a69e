// The ZeRO strategies by name: createZeroStrategy for a `--strategy zero1|zero2|zero3 [--offload]`
// choice, and a class per stage. What each stage is composed of is in zero1.ts, zero2.ts and
// zero3.ts; ShardedStrategy (sharded.ts) runs any of them.
import { StrategyError } from '../strategy.ts';
import { ShardedStrategy, type ShardComm, type ShardedStrategyOptions } from './sharded.ts';

export const ZERO_STRATEGIES = ['zero1', 'zero2', 'zero3'] as const;
export type ZeroStrategyName = (typeof ZERO_STRATEGIES)[number];

export function isZeroStrategy(name: string): name is ZeroStrategyName {
  return (ZERO_STRATEGIES as readonly string[]).includes(name);
}

/** ZeRO-1 (zero1.ts): optimizer state partitioned. */
export class Zero1Strategy extends ShardedStrategy {
  constructor(comm: ShardComm, opts: ShardedStrategyOptions = {}) {
    super(comm, 1, opts);
  }
}

/** ZeRO-2 (zero2.ts): optimizer state and gradients partitioned. */
export class Zero2Strategy extends ShardedStrategy {
  constructor(comm: ShardComm, opts: ShardedStrategyOptions = {}) {
    super(comm, 2, opts);
  }
}

/** ZeRO-3 (zero3.ts): optimizer state, gradients and parameters partitioned. */
export class Zero3Strategy extends ShardedStrategy {
  constructor(comm: ShardComm, opts: ShardedStrategyOptions = {}) {
    super(comm, 3, opts);
  }
}

export function createZeroStrategy(name: string, comm: ShardComm, opts: ShardedStrategyOptions = {}): ShardedStrategy {
  switch (name) {
    case 'zero1':
      return new Zero1Strategy(comm, opts);
    case 'zero2':
      return new Zero2Strategy(comm, opts);
    case 'zero3':
      return new Zero3Strategy(comm, opts);
    default:
      throw new StrategyError(`ZeRO strategy "${name}" is unknown, expected one of ${ZERO_STRATEGIES.join(', ')}`);
  }
}
