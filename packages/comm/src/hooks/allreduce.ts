// The plain hook, torch's allreduce_hook: the bucket's float32 average over the ranks, what DDP
// does without a hook. A user's hook can fall back to it (PowerSGD does before its start step).
import type { CommHook } from './types.ts';

export const allReduceHook: CommHook = async (bucket, group) => {
  await group.allReduce(bucket.buffer, { op: 'avg' });
  return bucket.buffer;
};
