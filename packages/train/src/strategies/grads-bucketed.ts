// Bucketed all-reduce (torch DDP's Reducer): how DDP reduces gradients. Each bucket
// (buckets.ts) is flattened, read back once and its average all-reduce issued, not awaited, as
// soon as it is complete, so the last blocks' communication runs while the engine computes the
// earlier ones; wait() waits for what is still in flight (commMs). take() uploads each reduced
// bucket once, or the whole reduced gradient once, laid out flat, where the optimizer updates a
// flat group. noSync(fn) is torch's `no_sync()`: gradients accumulate on the device and the next
// backward reduces the sum.
// Details: docs/internals.md#bucketed-all-reduce
import * as tf from '@tensorflow/tfjs-core';
import { copyToHost, HOST_MEMORY_BACKENDS } from '@zeroring/backend';
import type { CommHook, GradBucket, HookGroup } from '@zeroring/comm';
import type { BlockModel, NamedTensors } from '../model.ts';
import { StrategyError, type MemoryReport } from '../strategy.ts';
import { planBuckets, type Bucket, type BucketPlan } from './buckets.ts';
import type { DeviceGrads } from './grads-device.ts';
import { HostBufferPool } from './host-buffer-pool.ts';
import type { FullGradReducer } from './parts.ts';

export interface BucketedAllReduceOptions {
  /** Bytes of gradient per all-reduce. */
  bucketBytes: number;
  /** Cap of the first bucket (the last blocks' gradients). */
  firstBucketBytes: number;
  /**
   * Upload each reduced bucket once and slice it on the device (true), or make each
   * parameter's tensor from its range of the host buffer (false). Default: false on backends
   * whose memory is host memory (cpu, wasm), true otherwise.
   */
  splitOnDevice?: boolean;
  /**
   * Reduces each bucket instead of the plain average all-reduce (torch's register_comm_hook):
   * compression, say. Hooks run one at a time, in bucket order. None with world size 1.
   */
  commHook?: CommHook;
}

interface InFlight {
  bucket: number;
  /** Resolves to the bucket's averaged gradient once its all-reduce is done. */
  result: Promise<Float32Array>;
}

export class BucketedAllReduce implements FullGradReducer {
  private plan?: BucketPlan;
  /** Gradients of buckets not complete yet, per bucket. */
  private readonly filling = new Map<number, Map<string, tf.Tensor>>();
  /** Gradients accumulated under noSync, not yet reduced. */
  private readonly accumulated = new Map<string, tf.Tensor>();
  private inFlight: InFlight[] = [];
  /** Keeps all-reduces issued in bucket order even if read-backs resolve out of order. */
  private issueTail: Promise<void> = Promise.resolve();
  /** Reduced buckets between wait() and afterStep(). */
  private reduced = new Map<number, Float32Array>();
  private syncDisabled = false;
  /** A bucket read back this step held NaN or Inf before its all-reduce (device backends only). */
  private sawNonFinite = false;
  /** Optimizer steps done: the bucket's step for a comm hook. */
  private step = 0;
  private flatsOnDevice = 0;
  private hostBytes = 0;
  private peakDeviceGradBytes = 0;
  private peakHostBytes = 0;
  /** Host buffers of finished buckets, for the next step's read-backs on host-memory backends. */
  private readonly hostBuffers = new HostBufferPool();

  constructor(
    private readonly comm: HookGroup,
    private readonly opts: BucketedAllReduceOptions,
  ) {
    for (const k of ['bucketBytes', 'firstBucketBytes'] as const) {
      const v = opts[k];
      if (!Number.isFinite(v) || v < 4) throw new StrategyError(`DDP ${k} ${v} is invalid, expected a number >= 4`);
    }
  }

  /** The bucket layout (after setup): which parameters share an all-reduce. */
  get buckets(): readonly Bucket[] {
    return this.requirePlan().buckets;
  }

  setup(model: BlockModel): void {
    const { bucketBytes, firstBucketBytes } = this.opts;
    this.plan = planBuckets(model, { bucketBytes, firstBucketBytes });
  }

  /** Runs `fn` with gradient synchronisation off: gradients only accumulate locally. */
  async noSync<T>(fn: () => T | Promise<T>): Promise<T> {
    const prev = this.syncDisabled;
    this.syncDisabled = true;
    try {
      return await fn();
    } finally {
      this.syncDisabled = prev;
    }
  }

  onBlockGrads(_block: number, named: NamedTensors): void {
    const plan = this.requirePlan();
    for (const [name, g0] of Object.entries(named)) {
      const slot = plan.slotOf.get(name);
      if (!slot) {
        g0.dispose();
        throw new StrategyError(
          `gradient for unknown parameter "${name}", expected one of the model's ${plan.slotOf.size} parameters`,
        );
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

  async wait(step: number): Promise<number> {
    const start = performance.now();
    this.flushAccumulated();
    await this.checkComplete(step);
    const reduced = new Map<number, Float32Array>();
    for (const f of this.inFlight) {
      const buf = await f.result; // rejects with the process group's typed error on failure
      const have = reduced.get(f.bucket);
      if (have) for (let i = 0; i < have.length; i++) have[i] += buf[i];
      else reduced.set(f.bucket, buf);
    }
    this.inFlight = [];
    const commMs = performance.now() - start;
    if (reduced.size === 0) {
      throw new StrategyError(`finishStep at step ${step}: no gradients, expected forwardBackward before finishStep`);
    }
    this.reduced = reduced;
    return commMs;
  }

  take(grads: DeviceGrads): void {
    const layout = grads.flatLayout;
    if (layout) {
      // The optimizer takes the gradient flat: lay the reduced buckets out in its order on the
      // host and upload them once, with no per-parameter tensors to slice and concatenate again.
      const flat = new Float32Array(layout.size);
      for (const b of this.requirePlan().buckets) {
        const buf = this.reduced.get(b.index)!;
        for (const s of b.slots) flat.set(buf.subarray(s.offset, s.offset + s.size), layout.slotOf.get(s.name)!.offset);
      }
      this.hostBytes = 0;
      grads.addFlat(tf.tensor1d(flat, 'float32'));
      return;
    }
    const hostBacked = !(this.opts.splitOnDevice ?? !HOST_MEMORY_BACKENDS.has(tf.getBackend()));
    const named: NamedTensors = {};
    for (const b of this.requirePlan().buckets) uploadBucket(b, this.reduced.get(b.index)!, hostBacked, named);
    this.hostBytes = 0;
    for (const [name, g] of Object.entries(named)) grads.add(name, g);
  }

  issued(): Promise<void> {
    return this.issueTail;
  }

  localNonFinite(): boolean | undefined {
    return HOST_MEMORY_BACKENDS.has(tf.getBackend()) ? undefined : this.sawNonFinite;
  }

  /** A restored run goes on from `step` optimizer steps (a comm hook's schedule counts on it). */
  resumeAt(step: number): void {
    this.step = step;
  }

  afterStep(): void {
    this.step++;
    this.sawNonFinite = false;
    // Only now: on the cpu backend the gradient tensors were views of these buffers.
    if (HOST_MEMORY_BACKENDS.has(tf.getBackend())) for (const buf of this.reduced.values()) this.hostBuffers.give(buf);
    this.reduced = new Map();
  }

  report(r: MemoryReport): void {
    const grads = r.grads ?? { device: 0, host: 0 };
    r.grads = { device: Math.max(grads.device, this.peakDeviceGradBytes), host: grads.host };
    // The flat host buffers a bucket occupies from read-back until upload: communication
    // buffers in flight, reported apart from the model state.
    r.gathered = { device: 0, host: this.peakHostBytes };
    this.peakDeviceGradBytes = 0;
    this.peakHostBytes = 0;
  }

  async dispose(): Promise<void> {
    this.dropFilling();
    for (const t of this.accumulated.values()) t.dispose();
    this.accumulated.clear();
    await this.drainInFlight();
  }

  /** Gradients that only ever saw noSync backward passes: into their buckets now, in bucket order. */
  private flushAccumulated(): void {
    if (this.accumulated.size === 0) return;
    for (const b of this.requirePlan().buckets) {
      for (const s of b.slots) {
        const g = this.accumulated.get(s.name);
        if (!g) continue;
        this.accumulated.delete(s.name);
        this.addToBucket(b.index, s.name, g);
      }
    }
  }

  /**
   * Every bucket must be complete (issued) once any is: name what never came, in bucket order (a
   * bucket can be untouched while a later one is issued, when buckets end at block boundaries).
   */
  private async checkComplete(step: number): Promise<void> {
    const plan = this.requirePlan();
    const issued = new Set(this.inFlight.map((f) => f.bucket));
    if (this.filling.size === 0 && (issued.size === 0 || issued.size === plan.buckets.length)) return;
    const missing: string[] = [];
    for (const b of plan.buckets) {
      if (issued.has(b.index)) continue;
      const got = this.filling.get(b.index);
      for (const s of b.slots) if (!got?.has(s.name)) missing.push(s.name);
    }
    this.dropFilling();
    await this.drainInFlight();
    throw new StrategyError(
      `finishStep at step ${step}: no gradient for ${missing.map((n) => `"${n}"`).join(', ')}, ` +
        "expected every parameter's gradient from forwardBackward",
    );
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

  /** Flatten a complete bucket, read it back once and start its average all-reduce (or its hook). */
  private launch(b: Bucket, got: Map<string, tf.Tensor>): void {
    const pieces = b.slots.map((s) => got.get(s.name)!);
    const flat = tf.tidy(() =>
      pieces.length === 1 ? tf.reshape(pieces[0], [-1]) : tf.concat(pieces.map((t) => tf.reshape(t, [-1]))),
    );
    tf.dispose(pieces);
    this.flatsOnDevice += b.elems * 4;
    this.notePeaks();
    // Either read-back is a copy the tensor no longer needs, so the all-reduce may work on it in place.
    const hostBacked = HOST_MEMORY_BACKENDS.has(tf.getBackend());
    const read = hostBacked
      ? Promise.resolve(copyToHost(flat, this.hostBuffers.take(b.elems)))
      : (flat.data() as Promise<Float32Array>);
    const step = this.step;
    const issued = this.issueTail
      .then(() => read)
      .then((buf) => {
        flat.dispose();
        this.flatsOnDevice -= b.elems * 4;
        this.hostBytes += b.elems * 4;
        this.peakHostBytes = Math.max(this.peakHostBytes, this.hostBytes);
        // This rank's own values, before the all-reduce mixes in the others': a look here names
        // the rank with a non-finite gradient without a device probe of every gradient tensor.
        if (!hostBacked && !this.sawNonFinite && !allFinite(buf)) this.sawNonFinite = true;
        return { done: this.reduce(b, buf, step) };
      });
    // A hook may call its collectives one after another (PowerSGD: P, then Q from P): the next
    // bucket waits for the whole hook, so every rank calls them all in one order. The plain
    // all-reduce is one collective, queued at once: the next bucket only waits for that.
    const turn = this.opts.commHook ? issued.then(({ done }) => done) : issued;
    this.issueTail = turn.then(
      () => undefined,
      () => undefined,
    );
    const result = issued.then(({ done }) => done);
    // Awaited in wait(); until then a failure must not count as unhandled.
    result.catch(() => undefined);
    this.inFlight.push({ bucket: b.index, result });
  }

  /** The bucket's average over the ranks: the comm hook's, or the plain all-reduce's. */
  private reduce(b: Bucket, buf: Float32Array, step: number): Promise<Float32Array> {
    const hook = this.opts.commHook;
    if (this.comm.worldSize === 1) return Promise.resolve(buf);
    if (!hook) return this.comm.allReduce(buf, { op: 'avg' }).then(() => buf);
    const params = b.slots.map(({ name, shape, offset, size }) => ({ name, shape, offset, size }));
    const bucket: GradBucket = { index: b.index, buffer: buf, step, params };
    // A user's hook that throws at once fails this bucket like one that rejects.
    return Promise.resolve(bucket)
      .then((x) => hook(x, this.comm))
      .then((out) => {
        if (out instanceof Float32Array && out.length === b.elems) return out;
        const got = out instanceof Float32Array ? `${out.length} elements` : String(out);
        throw new StrategyError(
          `comm hook returned ${got} for bucket ${b.index}, expected a Float32Array of its ${b.elems} elements`,
        );
      });
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

function allFinite(buf: Float32Array): boolean {
  for (let i = 0; i < buf.length; i++) if (!Number.isFinite(buf[i])) return false;
  return true;
}

/** A reduced bucket's gradients as device tensors, one per parameter, into `out`. */
function uploadBucket(b: Bucket, buf: Float32Array, hostBacked: boolean, out: NamedTensors): void {
  if (hostBacked) {
    // The "device" is this process's memory: each parameter's tensor is one copy of its range,
    // with no per-transfer cost to save — and tfjs-wasm's Slice is slow (it reads the whole
    // source back per slice), so slicing one uploaded buffer would cost far more.
    for (const s of b.slots) out[s.name] = tf.tensor(buf.subarray(s.offset, s.offset + s.size), s.shape, 'float32');
    return;
  }
  // A real device: one upload per bucket, the per-parameter tensors are slices of it.
  const flat = tf.tensor1d(buf, 'float32');
  for (const s of b.slots) out[s.name] = tf.tidy(() => tf.reshape(tf.slice(flat, [s.offset], [s.size]), s.shape));
  flat.dispose();
}
