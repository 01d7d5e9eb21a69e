// The strategy for a `--strategy NAME [--offload]` choice over a world, in one place for the CLI,
// its workers and scripts. DDP without offload over a single process is the same computation as
// LocalStrategy, which needs no process group: that rule lives here and nowhere else. A comm
// hook belongs to DDP's bucketed all-reduce; the ZeRO stages reduce-scatter and refuse one.
import { ConfigError, type CommHook } from '@zeroring/comm';
import { STRATEGIES, type StrategyName } from '../memory.ts';
import { StrategyError, type Strategy } from '../strategy.ts';
import type { TrainerComm } from '../trainer.ts';
import { DDPStrategy, type DDPComm } from './ddp.ts';
import { LocalStrategy } from './local.ts';
import type { ShardComm } from './sharded.ts';
import { createZeroStrategy, isZeroStrategy } from './zero.ts';

export const STRATEGY_NAMES = STRATEGIES;
export type { StrategyName };

/** What every strategy and the trainer need of a process group (a ProcessGroup has it all). */
export type StrategyComm = DDPComm & ShardComm & TrainerComm;

/** Whether `name` with `offload` over one process still needs a process group. */
export function needsProcessGroup(name: StrategyName, offload: boolean): boolean {
  return name !== 'ddp' || offload;
}

export function createStrategy(
  name: StrategyName,
  comm: StrategyComm | undefined,
  opts: { offload: boolean; commHook?: CommHook },
): Strategy {
  const { offload, commHook } = opts;
  if (commHook && (name !== 'ddp' || offload)) {
    throw new ConfigError(
      `a comm hook with --strategy ${name}${offload ? ' --offload' : ''}: hooks replace DDP's bucket all-reduce, ` +
        'expected --strategy ddp (without --offload) or no comm hook',
    );
  }
  if (!needsProcessGroup(name, offload) && (comm === undefined || comm.worldSize === 1)) return new LocalStrategy();
  const choice = `--strategy ${name}${offload ? ' --offload' : ''}`;
  if (comm === undefined) {
    throw new StrategyError(`${choice} needs worker processes with a process group (zeroring train --nproc N)`);
  }
  if (name === 'ddp' && !offload) return new DDPStrategy(comm, { commHook });
  if (isZeroStrategy(name)) return createZeroStrategy(name, comm, { offload });
  throw new StrategyError(
    `${choice} is not implemented; expected ddp, or ${STRATEGY_NAMES.slice(1).join('|')} with or without --offload`,
  );
}
