// DDPStrategy: data parallelism with every parameter replicated on every rank (torch DDP). It is
// the composition
//   parameters  replicated: rank 0's initial values broadcast once, resident on every rank
//   gradients   bucketed all-reduce, issued during backward (grads-bucketed.ts, buckets.ts)
//   optimizer   AdamW on the device over every parameter (optim-replicated.ts)
// which is LocalStrategy with its gradients averaged over ranks: everything after the reduction
// is one-process training, and since every rank applies the same update to the same averaged
// gradient, ranks stay bit-identical without ever sending parameters again. A comm hook (torch's
// register_comm_hook; @zeroring/comm's hooks) replaces the plain average of each bucket.
import type { CommHook, ReduceOptions } from '@zeroring/comm';
import { DEFAULT_BUCKET_BYTES, DEFAULT_FIRST_BUCKET_BYTES, type Bucket } from './buckets.ts';
import { BucketedAllReduce } from './grads-bucketed.ts';
import type { LocalStrategyOptions } from './local.ts';
import { ReplicatedStrategy } from './replicated.ts';

/** The collectives DDP needs; a @zeroring/comm ProcessGroup has them. */
export interface DDPComm {
  readonly rank: number;
  readonly worldSize: number;
  allReduce(buf: Float32Array, opts?: ReduceOptions): Promise<unknown>;
  broadcast(buf: Float32Array, root: number): Promise<unknown>;
}

export interface DDPStrategyOptions extends LocalStrategyOptions {
  /** Bytes of gradient per all-reduce; default 25 MiB as torch. */
  bucketBytes?: number;
  /**
   * Cap of the first bucket (the last blocks' gradients), default 1 MiB as torch: small, so its
   * all-reduce starts while backward still has most blocks to go (buckets.ts).
   */
  firstBucketBytes?: number;
  /**
   * Upload each reduced bucket once and slice it on the device (true), or make each
   * parameter's tensor from its range of the host buffer (false). Default: false on backends
   * whose memory is host memory (cpu, wasm), true otherwise.
   */
  splitOnDevice?: boolean;
  /**
   * How each bucket is averaged over the ranks instead of the plain float32 all-reduce, torch's
   * `register_comm_hook`: bf16CompressHook, fp16CompressHook, powerSGDHook(new PowerSGDState())
   * from @zeroring/comm, or a user's own CommHook. Unused with world size 1.
   */
  commHook?: CommHook;
}

export class DDPStrategy extends ReplicatedStrategy {
  readonly name = 'ddp';
  readonly bucketBytes: number;
  readonly firstBucketBytes: number;
  readonly commHook?: CommHook;
  private readonly allReduce: BucketedAllReduce;

  constructor(
    readonly comm: DDPComm,
    opts: DDPStrategyOptions = {},
  ) {
    const bucketBytes = opts.bucketBytes ?? DEFAULT_BUCKET_BYTES;
    const firstBucketBytes = opts.firstBucketBytes ?? DEFAULT_FIRST_BUCKET_BYTES;
    const grads = new BucketedAllReduce(comm, {
      bucketBytes,
      firstBucketBytes,
      splitOnDevice: opts.splitOnDevice,
      commHook: opts.commHook,
    });
    super({ grads, broadcast: comm, adamw: opts.adamw });
    this.allReduce = grads;
    this.bucketBytes = bucketBytes;
    this.firstBucketBytes = firstBucketBytes;
    this.commHook = opts.commHook;
  }

  /** The bucket layout (after setup): which parameters share an all-reduce. */
  get buckets(): readonly Bucket[] {
    return this.allReduce.buckets;
  }

  /**
   * Run `fn` (typically one forwardBackward) with gradient synchronisation off: gradients only
   * accumulate locally, and the next synchronised backward (or finishStep) reduces the sum.
   */
  noSync<T>(fn: () => T | Promise<T>): Promise<T> {
    return this.allReduce.noSync(fn);
  }

  /** A DDP checkpoint says over how many ranks it was taken. */
  protected override stateMeta(): Record<string, unknown> {
    return { worldSize: this.comm.worldSize };
  }
}
