// DDPStrategy: data parallelism with every parameter replicated on every rank (torch DDP).
//
// setup() broadcasts rank 0's initial parameters, so ranks that initialised differently still
// start identical. During backward the engine hands over each block's gradients as soon as they
// exist; they are put into buckets (buckets.ts) and the moment a bucket is complete it is
// concatenated into one flat tensor, read back once, and its average all-reduce is *issued*
// without waiting for it — the process group queues collectives in issue order, so the
// communication of the last blocks runs while the engine still computes the earlier ones.
// finishStep() waits only for what is still in flight (the time reported as commMs), uploads
// each reduced bucket once, and steps the optimizer. (On CPU backends the kernels run on the
// JavaScript thread, so an issued all-reduce advances at the engine's yields between blocks and
// through the kernel's socket buffers; on a GPU backend it advances while the device computes.)
//
// Everything after the reduction is exactly one-process training, so the parameters, the device
// AdamW update, clipping and checkpoints are delegated to a LocalStrategy rather than written a
// second time: DDP is "LocalStrategy whose gradients were averaged over ranks". Since every rank
// applies the same update to the same averaged gradient, ranks stay bit-identical without ever
// sending parameters again.
//
// noSync(fn) is torch's `with ddp.no_sync():` — backward passes run inside it only accumulate
// gradients on the device; the next backward outside it adds its gradients to the accumulated
// ones and reduces the sum, so k micro-batches cost one all-reduce. If finishStep comes with
// gradients that were never reduced (every backward ran under noSync), it reduces them then, so
// ranks cannot silently diverge.
import * as tf from '@tensorflow/tfjs-core';
import { copyToHost, HOST_MEMORY_BACKENDS } from '@zeroring/backend';
import { paramCount, uniqueParams, type BlockModel, type NamedTensors } from '../model.ts';
import type { Phase } from '../engine.ts';
import { StrategyError, type FinishStepOptions, type MemoryReport, type ShardState, type StepStats, type Strategy } from '../strategy.ts';
import { LocalStrategy, type LocalStrategyOptions } from './local.ts';
import { DEFAULT_BUCKET_BYTES, DEFAULT_FIRST_BUCKET_BYTES, planBuckets, type Bucket, type BucketPlan } from './buckets.ts';

/** The collectives DDP needs; a @zeroring/comm ProcessGroup has them. */
export interface DDPComm {
  readonly rank: number;
  readonly worldSize: number;
  allReduce(buf: Float32Array, opts?: { op?: 'sum' | 'avg' | 'max' | 'min' }): Promise<unknown>;
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
}

interface InFlight {
  bucket: number;
  /** Resolves to the bucket's averaged gradient once its all-reduce is done. */
  result: Promise<Float32Array>;
}

export class DDPStrategy implements Strategy {
  readonly name = 'ddp';
  /** Parameters stay resident, so the engine keeps each block's forward for backward. */
  readonly recomputeActivations = false;
  readonly bucketBytes: number;
  readonly firstBucketBytes: number;
  private readonly splitOnDevice?: boolean;
  private readonly inner: LocalStrategy;
  private plan?: BucketPlan;
  /** Gradients of buckets not complete yet, per bucket. */
  private readonly filling = new Map<number, Map<string, tf.Tensor>>();
  /** Gradients accumulated under noSync, not yet reduced. */
  private readonly accumulated = new Map<string, tf.Tensor>();
  private inFlight: InFlight[] = [];
  /** Keeps all-reduces issued in bucket order even if read-backs resolve out of order. */
  private issueTail: Promise<void> = Promise.resolve();
  private syncDisabled = false;
  private flatsOnDevice = 0;
  private hostBytes = 0;
  private peakDeviceGradBytes = 0;
  private peakHostBytes = 0;
  /**
   * Host buffers of finished buckets, by length, for the next step's read-backs on host-memory
   * backends (at most one per bucket): a fresh buffer per bucket per step (what data() returns on
   * wasm) is an ArrayBuffer V8 counts toward its next full collection, 43 MB per step for the
   * small GPT.
   */
  private readonly spareHostBuffers = new Map<number, Float32Array[]>();

  constructor(
    readonly comm: DDPComm,
    opts: DDPStrategyOptions = {},
  ) {
    this.bucketBytes = opts.bucketBytes ?? DEFAULT_BUCKET_BYTES;
    this.firstBucketBytes = opts.firstBucketBytes ?? DEFAULT_FIRST_BUCKET_BYTES;
    for (const [k, v] of [['bucketBytes', this.bucketBytes], ['firstBucketBytes', this.firstBucketBytes]] as const) {
      if (!Number.isFinite(v) || v < 4) throw new StrategyError(`DDP ${k} ${v} is invalid, expected a number >= 4`);
    }
    this.splitOnDevice = opts.splitOnDevice;
    this.inner = new LocalStrategy({ adamw: opts.adamw });
  }

  /** The bucket layout (after setup): which parameters share an all-reduce. */
  get buckets(): readonly Bucket[] {
    return this.requirePlan().buckets;
  }

  async setup(model: BlockModel, initialParams: Map<string, Float32Array>): Promise<void> {
    const specs = uniqueParams(model);
    let total = 0;
    for (const spec of specs) {
      const n = paramCount(spec);
      const init = initialParams.get(spec.name);
      if (!init || init.length !== n) throw new StrategyError(`initial "${spec.name}" has ${init ? `${init.length} values` : 'no values'}, expected ${n} (shape [${spec.shape}])`);
      total += n;
    }
    // One broadcast of everything: a different model on some rank shows up as a size mismatch.
    const flat = new Float32Array(total);
    const views = new Map<string, Float32Array>();
    let off = 0;
    for (const spec of specs) {
      const n = paramCount(spec);
      flat.set(initialParams.get(spec.name)!, off);
      views.set(spec.name, flat.subarray(off, off + n));
      off += n;
    }
    if (this.comm.worldSize > 1) await this.comm.broadcast(flat, 0);
    this.plan = planBuckets(model, { bucketBytes: this.bucketBytes, firstBucketBytes: this.firstBucketBytes });
    await this.inner.setup(model, views);
  }

  acquire(block: number, phase: Phase): NamedTensors {
    return this.inner.acquire(block, phase);
  }

  release(block: number, phase: Phase): void {
    this.inner.release(block, phase);
  }

  /**
   * Run `fn` (typically one forwardBackward) with gradient synchronisation off: gradients only
   * accumulate locally, and the next synchronised backward (or finishStep) reduces the sum.
   */
  async noSync<T>(fn: () => T | Promise<T>): Promise<T> {
    const prev = this.syncDisabled;
    this.syncDisabled = true;
    try {
      return await fn();
    } finally {
      this.syncDisabled = prev;
    }
  }

  onBlockGrads(_block: number, grads: NamedTensors): void {
    const plan = this.requirePlan();
    for (const [name, g0] of Object.entries(grads)) {
      const slot = plan.slotOf.get(name);
      if (!slot) {
        g0.dispose();
        throw new StrategyError(`gradient for unknown parameter "${name}", expected one of the model's ${plan.slotOf.size} parameters`);
      }
      let g = g0;
      const prev = this.accumulated.get(name);
      if (prev) {
        g = tf.add(prev, g0);
        prev.dispose();
        g0.dispose();
        this.accumulated.delete(name);
      }
      if (this.syncDisabled) this.accumulated.set(name, g);
      else this.addToBucket(slot.bucket, name, g);
    }
    this.notePeaks();
  }

  async finishStep(opts: FinishStepOptions): Promise<StepStats> {
    const plan = this.requirePlan();
    const start = performance.now();
    // Gradients that only ever saw noSync backward passes: reduce them now, in bucket order.
    if (this.accumulated.size > 0) {
      for (const b of plan.buckets) {
        for (const s of b.slots) {
          const g = this.accumulated.get(s.name);
          if (!g) continue;
          this.accumulated.delete(s.name);
          this.addToBucket(b.index, s.name, g);
        }
      }
    }
    // Every bucket must be complete (issued) once any is: name what never came, in bucket order
    // (a bucket can be untouched while a later one is issued, when buckets end at block boundaries).
    const issued = new Set(this.inFlight.map((f) => f.bucket));
    if (this.filling.size > 0 || (issued.size > 0 && issued.size < plan.buckets.length)) {
      const missing: string[] = [];
      for (const b of plan.buckets) {
        if (issued.has(b.index)) continue;
        const got = this.filling.get(b.index);
        for (const s of b.slots) if (!got?.has(s.name)) missing.push(s.name);
      }
      this.dropFilling();
      await this.drainInFlight();
      throw new StrategyError(`finishStep at step ${opts.step}: no gradient for ${missing.map((n) => `"${n}"`).join(', ')}, expected every parameter's gradient from forwardBackward`);
    }
    const reduced = new Map<number, Float32Array>();
    for (const f of this.inFlight) {
      const buf = await f.result; // rejects with the process group's typed error on failure
      const have = reduced.get(f.bucket);
      if (have) for (let i = 0; i < have.length; i++) have[i] += buf[i];
      else reduced.set(f.bucket, buf);
    }
    this.inFlight = [];
    const commMs = performance.now() - start;
    if (reduced.size === 0) throw new StrategyError(`finishStep at step ${opts.step}: no gradients, expected forwardBackward before finishStep`);

    const t1 = performance.now();
    const named: NamedTensors = {};
    const hostBacked = !(this.splitOnDevice ?? !HOST_MEMORY_BACKENDS.has(tf.getBackend()));
    for (const b of plan.buckets) {
      const buf = reduced.get(b.index)!;
      if (hostBacked) {
        // The "device" is this process's memory: each parameter's tensor is one copy of its
        // range, with no per-transfer cost to save — and tfjs-wasm's Slice is slow (it reads
        // the whole source back per slice), so slicing one uploaded buffer would cost far more.
        for (const s of b.slots) named[s.name] = tf.tensor(buf.subarray(s.offset, s.offset + s.size), s.shape, 'float32');
      } else {
        // A real device: one upload per bucket, the per-parameter tensors are slices of it.
        const flat = tf.tensor1d(buf, 'float32');
        for (const s of b.slots) named[s.name] = tf.tidy(() => tf.reshape(tf.slice(flat, [s.offset], [s.size]), s.shape));
        flat.dispose();
      }
    }
    this.hostBytes = 0;
    this.inner.onBlockGrads(-1, named);
    const stats = await this.inner.finishStep(opts);
    // Only now: on the cpu backend the gradient tensors above were views of these buffers.
    if (HOST_MEMORY_BACKENDS.has(tf.getBackend())) for (const buf of reduced.values()) this.returnHostBuffer(buf);
    // optimMs covers the upload and the optimizer update.
    return { commMs, optimMs: performance.now() - t1, gradNorm: stats.gradNorm };
  }

  async fullParams(): Promise<Map<string, Float32Array>> {
    return this.inner.fullParams();
  }

  memory(): MemoryReport {
    const r = this.inner.memory();
    const grads = r.grads ?? { device: 0, host: 0 };
    r.grads = { device: Math.max(grads.device, this.peakDeviceGradBytes), host: grads.host };
    // The flat host buffers a bucket occupies from read-back until upload: communication
    // buffers in flight, reported apart from the model state.
    r.gathered = { device: 0, host: this.peakHostBytes };
    this.peakDeviceGradBytes = 0;
    this.peakHostBytes = 0;
    return r;
  }

  async saveState(): Promise<ShardState> {
    const s = await this.inner.saveState();
    return { meta: { ...s.meta, strategy: this.name, worldSize: this.comm.worldSize }, arrays: s.arrays };
  }

  async loadState(state: ShardState): Promise<void> {
    if (state.meta.strategy !== this.name) throw new StrategyError(`checkpoint shard is for strategy "${String(state.meta.strategy)}", expected "${this.name}"`);
    await this.inner.loadState({ meta: { ...state.meta, strategy: this.inner.name }, arrays: state.arrays });
  }

  async dispose(): Promise<void> {
    this.dropFilling();
    for (const t of this.accumulated.values()) t.dispose();
    this.accumulated.clear();
    await this.drainInFlight();
    await this.inner.dispose();
  }

  private addToBucket(bucket: number, name: string, g: tf.Tensor): void {
    const b = this.requirePlan().buckets[bucket];
    let got = this.filling.get(bucket);
    if (!got) this.filling.set(bucket, (got = new Map()));
    const prev = got.get(name);
    if (prev) {
      // Two backward passes' worth for one bucket before it completed: keep the sum.
      got.set(name, tf.add(prev, g));
      prev.dispose();
      g.dispose();
    } else {
      got.set(name, g);
    }
    if (got.size === b.slots.length) {
      this.filling.delete(bucket);
      this.launch(b, got);
    }
  }

  /** Flatten a complete bucket, read it back once and issue its average all-reduce. */
  private launch(b: Bucket, got: Map<string, tf.Tensor>): void {
    const pieces = b.slots.map((s) => got.get(s.name)!);
    const flat = tf.tidy(() => (pieces.length === 1 ? tf.reshape(pieces[0], [-1]) : tf.concat(pieces.map((t) => tf.reshape(t, [-1])))));
    tf.dispose(pieces);
    this.flatsOnDevice += b.elems * 4;
    this.notePeaks();
    // Either read-back is a copy the tensor no longer needs, so the all-reduce may work on it in place.
    const read = HOST_MEMORY_BACKENDS.has(tf.getBackend()) ? Promise.resolve(copyToHost(flat, this.takeHostBuffer(b.elems))) : (flat.data() as Promise<Float32Array>);
    const issued = this.issueTail
      .then(() => read)
      .then((buf) => {
        flat.dispose();
        this.flatsOnDevice -= b.elems * 4;
        this.hostBytes += b.elems * 4;
        this.peakHostBytes = Math.max(this.peakHostBytes, this.hostBytes);
        if (this.comm.worldSize === 1) return { buf, done: Promise.resolve() };
        return { buf, done: this.comm.allReduce(buf, { op: 'avg' }) };
      });
    this.issueTail = issued.then(
      () => undefined,
      () => undefined,
    );
    const result = issued.then(async ({ buf, done }) => {
      await done;
      return buf;
    });
    // Awaited in finishStep; until then a failure must not count as unhandled.
    result.catch(() => undefined);
    this.inFlight.push({ bucket: b.index, result });
  }

  private takeHostBuffer(length: number): Float32Array {
    return this.spareHostBuffers.get(length)?.pop() ?? new Float32Array(length);
  }

  private returnHostBuffer(buf: Float32Array): void {
    const spares = this.spareHostBuffers.get(buf.length);
    if (spares) spares.push(buf);
    else this.spareHostBuffers.set(buf.length, [buf]);
  }

  private notePeaks(): void {
    let bytes = this.flatsOnDevice;
    for (const t of this.accumulated.values()) bytes += t.size * 4;
    for (const got of this.filling.values()) for (const t of got.values()) bytes += t.size * 4;
    this.peakDeviceGradBytes = Math.max(this.peakDeviceGradBytes, bytes);
  }

  private dropFilling(): void {
    for (const got of this.filling.values()) for (const t of got.values()) t.dispose();
    this.filling.clear();
  }

  private async drainInFlight(): Promise<void> {
    const pending = this.inFlight;
    this.inFlight = [];
    await Promise.allSettled(pending.map((f) => f.result));
    this.hostBytes = 0;
  }

  private requirePlan(): BucketPlan {
    if (!this.plan) throw new StrategyError('DDPStrategy used before setup(model, params)');
    return this.plan;
  }
}
