// Parameters replicated and republished from the shards (ZeRO-1 and ZeRO-2): every parameter is
// resident on the device (params-replicated.ts), so forward and backward read them as DDP does,
// but each rank updates only its shard; after the update every group is all-gathered from the
// ranks' updated shards and its parameters are rebuilt as views of the gathered buffer (one
// host buffer per group in the partition's layout, so zero-copy on the cpu backend).
//
// The shard the optimizer updates is the offloaded optimizer's master copy when there is one;
// otherwise it is cut from the resident parameters on the device and read back updated.
import * as tf from '@tensorflow/tfjs-core';
import type { NamedTensors } from '../model.ts';
import type { ShardContext, ShardedParams } from './parts.ts';
import type { ShardOptimizer } from './optim-shard.ts';
import { ReplicatedParams } from './params-replicated.ts';

export class ReplicatedFromShards implements ShardedParams {
  /** Resident: the tensors a forward read are still valid in backward. */
  static readonly recomputeActivations = false;
  readonly gatherStats = { gathers: 0, acquires: 0, prefetchHits: 0 };
  private readonly params: ReplicatedParams;

  constructor(
    private readonly ctx: ShardContext,
    flat: Float32Array,
    private readonly master?: Float32Array,
  ) {
    this.params = ReplicatedParams.empty(ctx.model, ctx.mem);
    for (const g of ctx.part.groups) this.install(g.index, flat.slice(g.offset, g.offset + g.paddedLength));
  }

  acquire(block: number): NamedTensors {
    return this.params.acquire(block);
  }

  release(): void {}

  async settle(): Promise<void> {}

  async update(opt: ShardOptimizer, grads: Float32Array, lr: number, t: number): Promise<Float32Array> {
    if (this.master) {
      await opt.step(this.master, grads, lr, t);
      return this.master;
    }
    const { part, mem } = this.ctx;
    const updated = new Float32Array(part.shardLength);
    const dev = this.deviceShard();
    const a = mem.alloc('gathered', 'device', 8 * part.shardLength, 'optimizer inputs');
    try {
      await opt.step(updated, grads, lr, t, dev);
    } finally {
      dev.dispose();
      mem.free(a);
    }
    return updated;
  }

  /** Rebuild the resident parameters from every rank's shard, group by group. */
  async publish(shard: Float32Array): Promise<void> {
    const { part, mem, queue, comm } = this.ctx;
    const gathers = part.groups.map((grp) => {
      const out = new Float32Array(grp.paddedLength);
      const a = mem.alloc('gathered', 'host', 4 * grp.paddedLength, `params ${grp.name}`);
      const mine = shard.subarray(grp.shardOffset, grp.shardOffset + grp.shardLength);
      return queue
        .issue(mine, (x) => comm.allGather(x, out))
        .then(() => {
          mem.free(a);
          return out;
        });
    });
    for (const [gi, p] of gathers.entries()) this.install(gi, await p);
  }

  fullParams(): Promise<Map<string, Float32Array>> {
    return this.params.read();
  }

  async shardCopy(): Promise<Float32Array> {
    if (this.master) return this.master.slice();
    return this.ctx.part.shardFromValues(await this.fullParams(), this.ctx.comm.rank);
  }

  async load(shard: Float32Array): Promise<void> {
    this.master?.set(shard);
    await this.publish(shard);
  }

  dispose(): void {
    this.params.dispose();
  }

  /** Group gi's parameters become views of `buf` (the group's full layout). */
  private install(gi: number, buf: Float32Array): void {
    const { part } = this.ctx;
    for (const [name, view] of part.groupViews(gi, buf)) {
      this.params.set(name, tf.tensor(view, part.slot(name).shape, 'float32'));
    }
  }

  /** The owned shard of the resident parameters as one device tensor (padding zero). */
  private deviceShard(): tf.Tensor {
    const { part, comm } = this.ctx;
    const L = part.shardLength;
    return tf.tidy(() => {
      const parts: tf.Tensor[] = [];
      let at = 0;
      for (const pc of part.pieces(comm.rank)) {
        if (pc.shardOffset > at) parts.push(tf.zeros([pc.shardOffset - at]));
        parts.push(tf.slice(tf.reshape(this.params.get(pc.name), [-1]), [pc.paramOffset], [pc.length]));
        at = pc.shardOffset + pc.length;
      }
      if (at < L) parts.push(tf.zeros([L - at]));
      return parts.length === 1 ? tf.add(parts[0], 0) : tf.concat(parts);
    });
  }
}
