// The DDP communication hook contract, torch's `register_comm_hook(state, hook)`: DDP hands each
// complete gradient bucket to the hook instead of all-reducing it, and the hook resolves with the
// bucket averaged over the ranks, however it chooses to communicate (compressed, low-rank, ...).
// It lives here, beside the collectives it uses, and knows nothing of tensors: a bucket is a flat
// Float32Array plus the shapes of the parameters it holds. State (PowerSGD's error feedback, say)
// lives in the hook's closure, where torch passes it as `state`.
// Details: docs/internals.md#comm-hooks
import type { ReduceOptions } from '../group/calls.ts';

/** One parameter's gradient inside a bucket: buffer[offset, offset + size), row-major in `shape`. */
export interface BucketParam {
  readonly name: string;
  readonly shape: readonly number[];
  readonly offset: number;
  readonly size: number;
}

/** What a hook gets: torch's GradBucket. */
export interface GradBucket {
  /** The bucket's number: 0 is the first to complete in backward (the last blocks' gradients). */
  readonly index: number;
  /** This rank's local gradient, flat; the hook may reduce it in place. */
  readonly buffer: Float32Array;
  /** Optimizer steps done before this one: 0 in the first step. */
  readonly step: number;
  /** The parameters whose gradients the buffer holds, in order; their ranges tile it. */
  readonly params: readonly BucketParam[];
}

/** The collectives a hook may use: a ProcessGroup has them. */
export interface HookGroup {
  readonly rank: number;
  readonly worldSize: number;
  allReduce(buf: Float32Array, opts?: ReduceOptions): Promise<unknown>;
}

/**
 * Resolves with the bucket's gradient averaged over the ranks: `bucket.buffer` reduced in place,
 * or a new Float32Array of its length; the same values on every rank, or the ranks' parameters
 * drift apart. DDP runs the hooks of a step one at a time, in bucket order, so a hook may call
 * any number of collectives on `group`, in any order that every rank follows: an order that
 * depends on the step, the bucket and values every rank shares, never on this rank's own data.
 * A collective's failure (PeerLostError, CollectiveMismatchError, ...) should be let through.
 */
export type CommHook = (bucket: GradBucket, group: HookGroup) => Promise<Float32Array>;
