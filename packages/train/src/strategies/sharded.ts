// ShardedStrategy: ZeRO stages 1, 2 and 3 (Rajbhandari et al., "ZeRO: Memory Optimizations
// Toward Training Trillion Parameter Models"), with optional CPU offload of the optimizer.
//
// All stages share one flat partition of the parameters (partition.ts): a group per block, each
// padded to a multiple of N, rank r owning the r-th 1/N of every group, so every per-block
// collective is one equal-split reduce-scatter or all-gather. What a stage shards:
//
//   stage 1  optimizer state      full params + full grads on the device; at finishStep each
//                                 group's grads are reduce-scattered (avg), the owned shard is
//                                 updated, and the updated params are all-gathered group by group.
//   stage 2  + gradients          as backward hands over a block's grads (onBlockGrads) they are
//                                 flattened, read back and reduce-scattered at once; only the
//                                 owned gradient shard is kept, the device grads are freed.
//   stage 3  + parameters         only the parameter shard is kept; blocks are all-gathered before
//                                 forward and again before backward, with the next block's gather
//                                 issued while this one computes (zero3-gather.ts), and freed after.
//
// Offload (stage-independent): the owned shard's fp32 master params, gradients and Adam moments
// live in host (WASM) memory and HostAdamW updates them (sharded-optimizer.ts); without it the
// moments are device tensors and the device AdamW of LocalStrategy runs over the shard.
//
// The collectives deliver and take host Float32Arrays, so the reduced gradient shard, and for
// stage 3 the parameter shard, are host arrays on every backend (the memory report says so:
// place "host"); what the device holds is what the stage keeps of params (and stage 1's grads),
// the optimizer moments without offload, and transient in-flight buffers ("gathered").
//
// Exactness with DDP: the same averaged gradients (summed in another order by the ring),
// the same torch clip_grad_norm_ coefficient (squared shard norms all-reduced), and the same
// per-element AdamW; so parameters agree to float rounding. Every rank's update of its shard is
// deterministic, so a resumed run (same N) is bit-identical.
import * as tf from '@tensorflow/tfjs-core';
import { paramCount, uniqueParams, type BlockModel, type NamedTensors, type ParamSpec } from '../model.ts';
import type { Phase } from '../engine.ts';
import { DEFAULT_ADAMW, type AdamWConfig } from '../optim/adamw.ts';
import { FlatPartition } from '../partition.ts';
import { MemoryTracker, type Allocation } from '../memory.ts';
import { StrategyError, type FinishStepOptions, type MemoryReport, type ShardState, type StepStats, type Strategy } from '../strategy.ts';
import { clipCoefficient } from './local.ts';
import { IssueQueue } from './sharded-queue.ts';
import { DeviceShardAdamW, HostShardAdamW, type ShardOptimizer } from './sharded-optimizer.ts';
import { BlockGatherer } from './zero3-gather.ts';

/** The collectives ZeRO needs; a @zeroring/comm ProcessGroup has them. */
export interface ShardComm {
  readonly rank: number;
  readonly worldSize: number;
  allReduce(buf: Float32Array, opts?: { op?: 'sum' | 'avg' | 'max' | 'min' }): Promise<unknown>;
  reduceScatter(input: Float32Array, output: Float32Array, opts?: { op?: 'sum' | 'avg' | 'max' | 'min' }): Promise<unknown>;
  allGather(input: Float32Array, output: Float32Array): Promise<unknown>;
  broadcast(buf: Float32Array, root: number): Promise<unknown>;
}

export type ZeroStage = 1 | 2 | 3;

export interface ShardedStrategyOptions {
  /** Optimizer state (and the shard's fp32 master params and grads) in host memory, CPU AdamW. */
  offload?: boolean;
  adamw?: Partial<AdamWConfig>;
}

/** The partition layout a shard file records, so shards can be merged without the model. */
export interface ShardLayout {
  groups: Array<{ name: string; params: ParamSpec[] }>;
}

const noop = (): void => undefined;

export class ShardedStrategy implements Strategy {
  readonly name: string;
  readonly offload: boolean;
  private readonly cfg: AdamWConfig;
  private model?: BlockModel;
  private part?: FlatPartition;
  private specs: ParamSpec[] = [];
  private opt?: ShardOptimizer;
  private host?: HostShardAdamW;
  /** Stage 1/2: every parameter, resident on the device, and the accounting per group. */
  private readonly params = new Map<string, tf.Tensor>();
  private readonly paramAllocs = new Map<number, Allocation>();
  /** Stage 3 without offload: the parameter shard (with offload it is the host optimizer's). */
  private shardParams?: Float32Array;
  /** The reduced gradient shard (the host optimizer's with offload). */
  private gradShard?: Float32Array;
  private gradShardAlloc?: Allocation;
  /** Stage 1: full local gradients, accumulated on the device during backward. */
  private readonly localGrads = new Map<string, tf.Tensor>();
  private readonly localGradAllocs = new Map<string, Allocation>();
  /** Reductions issued / completed per group since the last step. */
  private issued = new Int32Array(0);
  private reduced = new Int32Array(0);
  private pending: Array<Promise<unknown>> = [];
  private readonly queue = new IssueQueue();
  private gatherer?: BlockGatherer;
  private t = 0;
  readonly mem = new MemoryTracker();

  constructor(
    readonly comm: ShardComm,
    readonly stage: ZeroStage,
    opts: ShardedStrategyOptions = {},
  ) {
    if (stage !== 1 && stage !== 2 && stage !== 3) throw new StrategyError(`ZeRO stage ${String(stage)} is invalid, expected 1, 2 or 3`);
    this.name = `zero${stage}`;
    this.offload = opts.offload ?? false;
    this.cfg = { ...DEFAULT_ADAMW, ...opts.adamw };
  }

  /** The flat partition (after setup). */
  get partition(): FlatPartition {
    if (!this.part) throw new StrategyError(`${this.name} used before setup(model, params)`);
    return this.part;
  }

  /** Stage 3: gathers issued and acquires served by a prefetch that had already landed. */
  get gatherStats(): { gathers: number; acquires: number; prefetchHits: number } {
    const g = this.gatherer;
    return { gathers: g?.gathers ?? 0, acquires: g?.acquires ?? 0, prefetchHits: g?.prefetchHits ?? 0 };
  }

  async setup(model: BlockModel, initialParams: Map<string, Float32Array>): Promise<void> {
    this.model = model;
    this.specs = uniqueParams(model);
    for (const spec of this.specs) {
      const n = paramCount(spec);
      const init = initialParams.get(spec.name);
      if (!init || init.length !== n) throw new StrategyError(`initial "${spec.name}" has ${init ? `${init.length} values` : 'no values'}, expected ${n} (shape [${spec.shape}])`);
    }
    const part = (this.part = FlatPartition.fromModel(model, this.comm.worldSize));
    const rank = this.comm.rank;
    const L = part.shardLength;
    // One broadcast of rank 0's values: every rank starts identical (as DDP), and a different
    // model on some rank shows up as a size mismatch.
    const flat = part.flatten(initialParams);
    if (this.comm.worldSize > 1) await this.comm.broadcast(flat, 0);

    const ranges = part.decayRanges(rank);
    if (this.offload) {
      const host = (this.host = await HostShardAdamW.create(L, ranges, this.cfg));
      this.opt = host;
      part.shard(flat, rank, host.params);
      this.gradShard = host.grads;
      this.mem.alloc('params', 'host', 4 * L, 'fp32 master shard');
      this.mem.alloc('grads', 'host', 4 * L, 'gradient shard');
      this.mem.alloc('optimizer', 'host', 8 * L, 'adam m, v shard');
    } else {
      this.opt = new DeviceShardAdamW(L, ranges, this.cfg);
      this.mem.alloc('optimizer', 'device', 8 * L, 'adam m, v shard');
      if (this.stage >= 2) {
        this.gradShard = new Float32Array(L);
        this.gradShardAlloc = this.mem.alloc('grads', 'host', 4 * L, 'gradient shard');
      }
    }
    if (this.stage === 3) {
      if (!this.offload) {
        this.shardParams = part.shard(flat, rank);
        this.mem.alloc('params', 'host', 4 * L, 'parameter shard');
      }
      this.gatherer = new BlockGatherer(model, part, this.comm, this.queue, () => this.paramShard(), this.mem);
    } else {
      for (const g of part.groups) this.installGroup(g.index, flat.slice(g.offset, g.offset + g.paddedLength));
    }
    this.issued = new Int32Array(part.groups.length);
    this.reduced = new Int32Array(part.groups.length);
  }

  /** ZeRO-3 frees each gathered block after use: backward gathers it again and recomputes. */
  get recomputeActivations(): boolean {
    return this.stage === 3;
  }

  acquire(block: number, phase: Phase): NamedTensors | Promise<NamedTensors> {
    if (this.gatherer) return this.gatherer.acquire(block, phase);
    const model = this.requireModel();
    const out: NamedTensors = {};
    for (const p of model.blocks[block].params) out[p.name] = this.params.get(p.name)!;
    return out;
  }

  release(block: number, _phase: Phase): void {
    this.gatherer?.release(block);
  }

  onBlockGrads(_block: number, grads: NamedTensors): void {
    const part = this.partition;
    const names = Object.keys(grads);
    if (names.length === 0) return;
    for (const n of names) {
      try {
        part.slot(n);
      } catch (err) {
        tf.dispose(Object.values(grads));
        throw new StrategyError(`gradient for unknown parameter "${n}", expected one of the model's ${part.params.length} parameters (${(err as Error).message})`);
      }
    }
    if (this.stage === 1) {
      for (const [name, g] of Object.entries(grads)) {
        const prev = this.localGrads.get(name);
        if (prev) {
          this.localGrads.set(name, tf.add(prev, g));
          tf.dispose([prev, g]);
        } else {
          this.localGrads.set(name, g);
          this.localGradAllocs.set(name, this.mem.alloc('grads', 'device', 4 * g.size, name));
        }
      }
      return;
    }
    // Stage 2/3: the engine emits a block's gradients complete, so they form whole groups.
    const byGroup = new Map<number, NamedTensors>();
    for (const [name, g] of Object.entries(grads)) {
      const gi = part.slot(name).group;
      let m = byGroup.get(gi);
      if (!m) byGroup.set(gi, (m = {}));
      m[name] = g;
    }
    for (const [gi, m] of byGroup) this.reduceGroup(gi, m);
  }

  /**
   * Flatten one group's gradients (padding zeroed), read them back, and issue their average
   * reduce-scatter; the owned slice is added into the gradient shard when it lands.
   */
  private reduceGroup(gi: number, grads: NamedTensors): void {
    const part = this.partition;
    const grp = part.groups[gi];
    const missing = grp.params.filter((n) => !grads[n]);
    if (missing.length > 0) {
      tf.dispose(Object.values(grads));
      throw new StrategyError(`gradients of group "${grp.name}" lack ${missing.map((n) => `"${n}"`).join(', ')}, expected every parameter the block introduces at once`);
    }
    const pad = grp.paddedLength - grp.length;
    const flat = tf.tidy(() => {
      const parts = grp.params.map((n) => tf.reshape(grads[n], [-1]));
      if (pad > 0) parts.push(tf.zeros([pad]));
      return parts.length === 1 ? parts[0] : tf.concat(parts);
    });
    tf.dispose(Object.values(grads));
    const inFlight = this.mem.alloc('gathered', 'device', 4 * grp.paddedLength, `grads ${grp.name}`);
    let hostAlloc: Allocation | undefined;
    const read = (flat.data() as Promise<Float32Array>).then((buf) => {
      // A read-back is a copy the tensor no longer needs (cpu: its own array, dying with it).
      flat.dispose();
      this.mem.free(inFlight);
      hostAlloc = this.mem.alloc('gathered', 'host', 4 * grp.paddedLength, `grads ${grp.name}`);
      return buf;
    });
    const out = new Float32Array(grp.shardLength);
    const done = this.queue
      .issue(read, (buf) => this.comm.reduceScatter(buf, out, { op: 'avg' }))
      .then(() => {
        if (hostAlloc) this.mem.free(hostAlloc);
        const dst = this.requireGradShard().subarray(grp.shardOffset, grp.shardOffset + grp.shardLength);
        if (this.reduced[gi] === 0) dst.set(out);
        else for (let i = 0; i < dst.length; i++) dst[i] += out[i];
        this.reduced[gi]++;
      });
    done.catch(noop);
    this.issued[gi]++;
    this.pending.push(done);
  }

  async finishStep(opts: FinishStepOptions): Promise<StepStats> {
    const part = this.partition;
    const start = performance.now();
    await this.gatherer?.settle();
    if (this.stage === 1) {
      const missing = this.specs.filter((s) => !this.localGrads.has(s.name)).map((s) => s.name);
      if (missing.length === 0) {
        if (!this.gradShard) {
          // Stage 1 keeps no gradient shard between steps: it exists from here to the update.
          this.gradShard = new Float32Array(part.shardLength);
          this.gradShardAlloc = this.mem.alloc('gathered', 'host', 4 * part.shardLength, 'reduced gradient shard');
        }
        // Reverse group order, as backward would have produced them.
        for (let gi = part.groups.length - 1; gi >= 0; gi--) {
          const grp = part.groups[gi];
          if (grp.params.length === 0) continue;
          const named: NamedTensors = {};
          for (const n of grp.params) {
            named[n] = this.localGrads.get(n)!;
            this.localGrads.delete(n);
            this.mem.free(this.localGradAllocs.get(n)!);
            this.localGradAllocs.delete(n);
          }
          this.reduceGroup(gi, named);
        }
      } else {
        await this.abortStep();
        throw new StrategyError(`finishStep at step ${opts.step}: no gradient for ${missing.map((n) => `"${n}"`).join(', ')}, expected every parameter's gradient from forwardBackward`);
      }
    } else {
      const missing = part.groups.filter((g) => g.params.length > 0 && this.issued[g.index] === 0);
      if (missing.length > 0) {
        await this.abortStep();
        throw new StrategyError(`finishStep at step ${opts.step}: no gradients for block group(s) ${missing.map((g) => `"${g.name}"`).join(', ')}, expected every block's gradients from forwardBackward`);
      }
    }
    const pending = this.pending;
    this.pending = [];
    try {
      for (const p of pending) await p; // rejects with the process group's typed error
    } catch (err) {
      await Promise.allSettled(pending);
      this.resetGrads();
      throw err;
    }
    let commMs = performance.now() - start;

    const t1 = performance.now();
    const g = this.requireGradShard();
    const scale = opts.gradScale ?? 1;
    if (scale !== 1) scaleInPlace(g, scale);
    let gradNorm: number | undefined;
    if (opts.maxGradNorm && opts.maxGradNorm > 0) {
      // torch clip_grad_norm_ over the complete gradient: the shards partition it (padding is
      // zero), so the squared norms of all shards sum to the squared global norm.
      let sq = 0;
      for (let i = 0; i < g.length; i++) sq += g[i] * g[i];
      const buf = Float32Array.of(sq);
      if (this.comm.worldSize > 1) await this.queue.issue(buf, (b) => this.comm.allReduce(b, { op: 'sum' }));
      gradNorm = Math.sqrt(buf[0]);
      const coef = clipCoefficient(gradNorm, opts.maxGradNorm);
      if (coef < 1) scaleInPlace(g, coef);
    }
    this.t += 1;
    const opt = this.requireOpt();
    let updated: Float32Array;
    if (this.stage === 3 || this.host) {
      updated = this.paramShardOrMaster();
      await opt.step(updated, g, opts.lr, this.t);
    } else {
      // Stage 1/2 on the device: the shard is cut from the resident parameters, updated, read back.
      updated = new Float32Array(part.shardLength);
      const dev = this.deviceShard();
      const a = this.mem.alloc('gathered', 'device', 8 * part.shardLength, 'optimizer inputs');
      try {
        await opt.step(updated, g, opts.lr, this.t, dev);
      } finally {
        dev.dispose();
        this.mem.free(a);
      }
    }
    const optimMs = performance.now() - t1;

    if (this.stage < 3) {
      const t2 = performance.now();
      await this.gatherAll(updated);
      commMs += performance.now() - t2;
    }
    this.resetGrads();
    return { commMs, optimMs, gradNorm };
  }

  /** Stage 1/2: rebuild the resident parameters from every rank's shard (group by group). */
  private async gatherAll(shard: Float32Array): Promise<void> {
    const part = this.partition;
    const gathers = part.groups.map((grp) => {
      const out = new Float32Array(grp.paddedLength);
      const a = this.mem.alloc('gathered', 'host', 4 * grp.paddedLength, `params ${grp.name}`);
      return this.queue.issue(shard.subarray(grp.shardOffset, grp.shardOffset + grp.shardLength), (x) => this.comm.allGather(x, out)).then(() => {
        this.mem.free(a);
        return out;
      });
    });
    for (const [gi, p] of gathers.entries()) this.installGroup(gi, await p);
  }

  /** Stage 1/2: group gi's parameters become views of `buf` (the group's full layout). */
  private installGroup(gi: number, buf: Float32Array): void {
    const part = this.partition;
    const grp = part.groups[gi];
    for (const [name, view] of part.groupViews(gi, buf)) {
      this.params.get(name)?.dispose();
      this.params.set(name, tf.tensor(view, part.slot(name).shape, 'float32'));
    }
    if (!this.paramAllocs.has(gi)) this.paramAllocs.set(gi, this.mem.alloc('params', 'device', 4 * grp.length, grp.name));
  }

  /** Stage 1/2: the owned shard of the resident parameters as one device tensor (padding zero). */
  private deviceShard(): tf.Tensor {
    const part = this.partition;
    const L = part.shardLength;
    return tf.tidy(() => {
      const parts: tf.Tensor[] = [];
      let at = 0;
      for (const pc of part.pieces(this.comm.rank)) {
        if (pc.shardOffset > at) parts.push(tf.zeros([pc.shardOffset - at]));
        parts.push(tf.slice(tf.reshape(this.params.get(pc.name)!, [-1]), [pc.paramOffset], [pc.length]));
        at = pc.shardOffset + pc.length;
      }
      if (at < L) parts.push(tf.zeros([L - at]));
      return parts.length === 1 ? tf.add(parts[0], 0) : tf.concat(parts);
    });
  }

  private paramShard(): Float32Array {
    const s = this.host?.params ?? this.shardParams;
    if (!s) throw new StrategyError(`${this.name}: no parameter shard (stage ${this.stage}${this.offload ? ', offload' : ''})`);
    return s;
  }

  /** The host array the optimizer updates in place: stage 3's shard, or the offload master copy. */
  private paramShardOrMaster(): Float32Array {
    return this.paramShard();
  }

  private resetGrads(): void {
    this.issued.fill(0);
    this.reduced.fill(0);
    for (const t of this.localGrads.values()) t.dispose();
    this.localGrads.clear();
    for (const a of this.localGradAllocs.values()) this.mem.free(a);
    this.localGradAllocs.clear();
    if (this.stage === 1 && !this.host) {
      this.gradShard = undefined;
      if (this.gradShardAlloc) this.mem.free(this.gradShardAlloc);
      this.gradShardAlloc = undefined;
    } else {
      this.gradShard?.fill(0);
    }
  }

  private async abortStep(): Promise<void> {
    const pending = this.pending;
    this.pending = [];
    await Promise.allSettled(pending);
    this.resetGrads();
  }

  async fullParams(): Promise<Map<string, Float32Array>> {
    const part = this.partition;
    if (this.stage < 3) {
      const out = new Map<string, Float32Array>();
      for (const spec of this.specs) out.set(spec.name, (await this.params.get(spec.name)!.data()) as Float32Array);
      return out;
    }
    const N = this.comm.worldSize;
    const L = part.shardLength;
    const all = new Float32Array(N * L);
    await this.queue.issue(this.paramShard(), (x) => this.comm.allGather(x, all));
    const shards = Array.from({ length: N }, (_, r) => all.subarray(r * L, (r + 1) * L));
    return part.unflatten(part.unshard(shards));
  }

  memory(): MemoryReport {
    const report = this.mem.peaks();
    this.mem.resetPeak();
    return report;
  }

  /** The partition layout, as recorded in shard files. */
  layout(): ShardLayout {
    const part = this.partition;
    return { groups: part.groups.map((g) => ({ name: g.name, params: g.params.map((n) => ({ name: n, shape: [...part.slot(n).shape] })) })) };
  }

  async saveState(): Promise<ShardState> {
    const part = this.partition;
    const rank = this.comm.rank;
    const param = this.stage === 3 || this.host ? this.paramShard().slice() : part.shardFromValues(await this.fullParams(), rank);
    const { m, v } = await this.requireOpt().moments();
    return {
      meta: {
        strategy: this.name,
        stage: this.stage,
        offload: this.offload,
        t: this.t,
        worldSize: this.comm.worldSize,
        rank,
        shardLength: part.shardLength,
        totalLength: part.totalLength,
        adamw: { ...this.cfg },
        layout: this.layout(),
      },
      arrays: new Map([
        ['shard/param', param],
        ['shard/m', m],
        ['shard/v', v],
      ]),
    };
  }

  async loadState(state: ShardState): Promise<void> {
    const part = this.partition;
    const { meta } = state;
    if (meta.strategy !== this.name) throw new StrategyError(`checkpoint shard is for strategy "${String(meta.strategy)}", expected "${this.name}"`);
    if (meta.worldSize !== this.comm.worldSize) throw new StrategyError(`checkpoint shard was saved by ${String(meta.worldSize)} ranks, expected ${this.comm.worldSize} (resume with the same --nproc, or consolidate it)`);
    if (meta.rank !== this.comm.rank) throw new StrategyError(`checkpoint shard is rank ${String(meta.rank)}'s, expected rank ${this.comm.rank}'s`);
    if (meta.shardLength !== part.shardLength) throw new StrategyError(`checkpoint shard length ${String(meta.shardLength)}, expected ${part.shardLength} (a different model?)`);
    const t = meta.t;
    if (typeof t !== 'number' || !Number.isInteger(t) || t < 0) throw new StrategyError(`checkpoint optimizer step ${String(t)} is invalid, expected an integer >= 0`);
    const get = (k: string): Float32Array => {
      const a = state.arrays.get(k);
      if (!a || a.length !== part.shardLength) throw new StrategyError(`checkpoint shard lacks ${k} with ${part.shardLength} values (got ${a?.length ?? 'none'})`);
      return a;
    };
    const param = get('shard/param');
    this.requireOpt().loadMoments(get('shard/m'), get('shard/v'));
    if (this.stage === 3 || this.host) this.paramShard().set(param);
    if (this.stage < 3) await this.gatherAll(param);
    this.t = t;
  }

  async dispose(): Promise<void> {
    await Promise.allSettled(this.pending);
    this.pending = [];
    await this.gatherer?.settle();
    await this.queue.idle();
    for (const t of this.params.values()) t.dispose();
    this.params.clear();
    for (const t of this.localGrads.values()) t.dispose();
    this.localGrads.clear();
    await this.opt?.dispose();
    this.opt = undefined;
    this.host = undefined;
  }

  private requireModel(): BlockModel {
    if (!this.model) throw new StrategyError(`${this.name} used before setup(model, params)`);
    return this.model;
  }
  private requireOpt(): ShardOptimizer {
    if (!this.opt) throw new StrategyError(`${this.name} used before setup(model, params) or after dispose()`);
    return this.opt;
  }
  private requireGradShard(): Float32Array {
    if (!this.gradShard) throw new StrategyError(`${this.name}: no gradient shard (internal: reduction outside a step)`);
    return this.gradShard;
  }
}

/** g *= factor in float32, as tf.mul(g, factor) rounds (the factor itself is a float32 scalar). */
function scaleInPlace(g: Float32Array, factor: number): void {
  const f = Math.fround(factor);
  for (let i = 0; i < g.length; i++) g[i] *= f;
}

/**
 * The full parameters from every rank's saved shard of a ZeRO run (DeepSpeed's zero_to_fp32):
 * the recorded layout rebuilds the partition, which puts the shards back together. `states`
 * are the shard files of ranks 0..N-1 in order.
 */
export function consolidateShards(states: readonly ShardState[]): Map<string, Float32Array> {
  const N = states.length;
  if (N === 0) throw new StrategyError('consolidate: no shards, expected one per rank');
  const layout = states[0].meta.layout as ShardLayout | undefined;
  if (!layout || !Array.isArray(layout.groups)) throw new StrategyError(`consolidate: shard of strategy "${String(states[0].meta.strategy)}" records no partition layout, expected a ZeRO (zero1/zero2/zero3) shard`);
  states.forEach((s, r) => {
    if (s.meta.rank !== r) throw new StrategyError(`consolidate: shard ${r} is rank ${String(s.meta.rank)}'s, expected rank ${r}'s`);
    if (s.meta.worldSize !== N) throw new StrategyError(`consolidate: shard ${r} was saved by ${String(s.meta.worldSize)} ranks, expected ${N} (one shard per rank)`);
  });
  const part = FlatPartition.fromGroups(layout.groups, N);
  const shards = states.map((s, r) => {
    const a = s.arrays.get('shard/param');
    if (!a || a.length !== part.shardLength) throw new StrategyError(`consolidate: shard ${r} lacks shard/param with ${part.shardLength} values (got ${a?.length ?? 'none'})`);
    return a;
  });
  return part.unflatten(part.unshard(shards), { copy: true });
}
