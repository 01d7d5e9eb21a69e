// A rank's shard of the averaged gradient, and the reduce-scatters that fill it: the algorithm
// both ZeRO reducers share (grads-per-block.ts per block during backward, grads-at-step.ts at the
// end of the step). Each group is flattened, read back once and reduce-scattered through the
// IssueQueue; the owned slice is added into the host shard, so micro-batches accumulate.
// Details (where the shard lives): docs/internals.md#gradient-shard
import * as tf from '@tensorflow/tfjs-core';
import type { NamedTensors } from '../model.ts';
import type { Allocation } from '../memory.ts';
import { StrategyError } from '../strategy.ts';
import type { ShardContext } from './parts.ts';

const noop = (): void => undefined;

export class GradientShard {
  private values?: Float32Array;
  private alloc?: Allocation;
  /** Reductions issued / completed per group since the last step. */
  private readonly issued: Int32Array;
  private readonly reduced: Int32Array;
  private pending: Array<Promise<unknown>> = [];

  constructor(
    private readonly ctx: ShardContext,
    /** The shard's memory for the run (the offloaded optimizer's), if any. */
    private readonly buffer: Float32Array | undefined,
    /** Without `buffer`: keep a shard only from open() to reset(), else one for the run. */
    private readonly perStep: boolean,
  ) {
    const { part, mem } = ctx;
    if (buffer) this.values = buffer;
    else if (!perStep) {
      this.values = new Float32Array(part.shardLength);
      this.alloc = mem.alloc('grads', 'host', 4 * part.shardLength, 'gradient shard');
    }
    this.issued = new Int32Array(part.groups.length);
    this.reduced = new Int32Array(part.groups.length);
  }

  /** A per-step shard exists from here to reset(). */
  open(): void {
    if (this.values) return;
    const L = this.ctx.part.shardLength;
    this.values = new Float32Array(L);
    this.alloc = this.ctx.mem.alloc('gathered', 'host', 4 * L, 'reduced gradient shard');
  }

  /** Whether a reduction of group `gi` was issued this step. */
  wasIssued(gi: number): boolean {
    return this.issued[gi] > 0;
  }

  /**
   * Flatten one group's gradients (padding zeroed), read them back, and issue their average
   * reduce-scatter; the owned slice is added into the gradient shard when it lands.
   */
  reduceGroup(gi: number, grads: NamedTensors): void {
    const { part, mem, queue, comm } = this.ctx;
    const grp = part.groups[gi];
    const missing = grp.params.filter((n) => !grads[n]);
    if (missing.length > 0) {
      tf.dispose(Object.values(grads));
      throw new StrategyError(
        `gradients of group "${grp.name}" lack ${missing.map((n) => `"${n}"`).join(', ')}, ` +
          'expected every parameter the block introduces at once',
      );
    }
    const pad = grp.paddedLength - grp.length;
    const flat = tf.tidy(() => {
      const parts = grp.params.map((n) => tf.reshape(grads[n], [-1]));
      if (pad > 0) parts.push(tf.zeros([pad]));
      return parts.length === 1 ? parts[0] : tf.concat(parts);
    });
    tf.dispose(Object.values(grads));
    const inFlight = mem.alloc('gathered', 'device', 4 * grp.paddedLength, `grads ${grp.name}`);
    let hostAlloc: Allocation | undefined;
    const read = (flat.data() as Promise<Float32Array>).then((buf) => {
      // A read-back is a copy the tensor no longer needs (cpu: its own array, dying with it).
      flat.dispose();
      mem.free(inFlight);
      hostAlloc = mem.alloc('gathered', 'host', 4 * grp.paddedLength, `grads ${grp.name}`);
      return buf;
    });
    const out = new Float32Array(grp.shardLength);
    const done = queue
      .issue(read, (buf) => comm.reduceScatter(buf, out, { op: 'avg' }))
      .then(() => {
        if (hostAlloc) mem.free(hostAlloc);
        const dst = this.require().subarray(grp.shardOffset, grp.shardOffset + grp.shardLength);
        if (this.reduced[gi] === 0) dst.set(out);
        else for (let i = 0; i < dst.length; i++) dst[i] += out[i];
        this.reduced[gi]++;
      });
    done.catch(noop);
    this.issued[gi]++;
    this.pending.push(done);
  }

  /** The shard, once every issued reduction landed; on a failed one, the step is dropped and it throws. */
  async wait(): Promise<Float32Array> {
    const pending = this.pending;
    this.pending = [];
    try {
      for (const p of pending) await p; // rejects with the process group's typed error
    } catch (err) {
      await Promise.allSettled(pending);
      this.reset();
      throw err;
    }
    return this.require();
  }

  /** Waits for what is in flight (its result no longer matters) and clears the step. */
  async abort(): Promise<void> {
    const pending = this.pending;
    this.pending = [];
    await Promise.allSettled(pending);
    this.reset();
  }

  /** Clears the step: a per-step shard is dropped, a kept one zeroed. */
  reset(): void {
    this.issued.fill(0);
    this.reduced.fill(0);
    if (this.perStep && !this.buffer) {
      this.values = undefined;
      if (this.alloc) this.ctx.mem.free(this.alloc);
      this.alloc = undefined;
    } else {
      this.values?.fill(0);
    }
  }

  private require(): Float32Array {
    if (!this.values) throw new StrategyError('no gradient shard (internal: reduction outside a step)');
    return this.values;
  }
}

/** Throws (freeing `grads`) when a gradient is for a parameter the partition does not hold. */
export function checkKnownGrads(ctx: ShardContext, grads: NamedTensors): void {
  const { part } = ctx;
  for (const n of Object.keys(grads)) {
    try {
      part.slot(n);
    } catch (err) {
      tf.dispose(Object.values(grads));
      throw new StrategyError(
        `gradient for unknown parameter "${n}", expected one of the model's ${part.params.length} parameters ` +
          `(${(err as Error).message})`,
      );
    }
  }
}
