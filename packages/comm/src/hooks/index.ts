// The comm hooks by name, as `zeroring train --comm-hook NAME` chooses them, and the public
// surface of the hooks folder.
import { ConfigError } from '../errors.ts';
import { allReduceHook } from './allreduce.ts';
import { bf16CompressHook, fp16CompressHook } from './compress16.ts';
import { PowerSGDState, powerSGDHook, type PowerSGDOptions } from './powersgd.ts';
import type { CommHook } from './types.ts';

export { allReduceHook, bf16CompressHook, fp16CompressHook, PowerSGDState, powerSGDHook };
export { POWERSGD_DEFAULTS, type PowerSGDOptions } from './powersgd.ts';
export { planCompression, type CompressionPlan, type LowRankSlot } from './lowrank.ts';
export type { BucketParam, CommHook, GradBucket, HookGroup } from './types.ts';

export const COMM_HOOK_NAMES = ['none', 'bf16', 'fp16', 'powersgd'] as const;
export type CommHookName = (typeof COMM_HOOK_NAMES)[number];

/** A fresh hook (with fresh state) for a name; undefined for 'none', the plain all-reduce. */
export function commHookByName(name: CommHookName, powerSGD: PowerSGDOptions = {}): CommHook | undefined {
  switch (name) {
    case 'none':
      return undefined;
    case 'bf16':
      return bf16CompressHook;
    case 'fp16':
      return fp16CompressHook;
    case 'powersgd':
      return powerSGDHook(new PowerSGDState(powerSGD));
    default:
      throw new ConfigError(`comm hook '${String(name)}' is not known, expected one of ${COMM_HOOK_NAMES.join(', ')}`);
  }
}
