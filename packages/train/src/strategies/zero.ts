// createZeroStrategy: the ZeRO strategy for a `--strategy zero1|zero2|zero3 [--offload]` choice.
import { StrategyError } from '../strategy.ts';
import type { ShardComm, ShardedStrategy, ShardedStrategyOptions } from './sharded.ts';
import { Zero1Strategy } from './zero1.ts';
import { Zero2Strategy } from './zero2.ts';
import { Zero3Strategy } from './zero3.ts';

export const ZERO_STRATEGIES = ['zero1', 'zero2', 'zero3'] as const;
export type ZeroStrategyName = (typeof ZERO_STRATEGIES)[number];

export function isZeroStrategy(name: string): name is ZeroStrategyName {
  return (ZERO_STRATEGIES as readonly string[]).includes(name);
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
