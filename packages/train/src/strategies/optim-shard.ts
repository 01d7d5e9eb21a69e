// Where a ZeRO rank's optimizer runs: AdamW over the flat shard it owns (partition.ts), on the
// device (optim/adamw.ts; on WebGPU the fused program of optim-shard-flat.ts) or, with --offload,
// in host memory (optim/host-adamw.ts). onDevice and onHost place one and account what it holds.
// Both take and leave host Float32Arrays, where the collectives deliver and take them; weight
// decay goes by runs of the shard (decayRanges), so each element's arithmetic is exactly
// LocalStrategy's for its parameter.
// Details: docs/internals.md#shard-optimizer
import * as tf from '@tensorflow/tfjs-core';
import { adamwUpdate, type AdamWConfig } from '../optim/adamw.ts';
import { HostAdamW } from '../optim/host-adamw.ts';
import { decayRuns, type DecayRun } from '../optim/host-adamw-loops.ts';
import type { MemoryPlace } from '../memory.ts';
import { StrategyError } from '../strategy.ts';

export interface ShardOptimizer {
  readonly place: MemoryPlace;
  readonly length: number;
  /**
   * One AdamW step (t from 1) of `params` with `grads`, both host arrays of `length`; `params`
   * is updated in place. Device: uploads both (or takes the current parameters from
   * `deviceParams`, a 1-D tensor of the shard already on the device), updates, reads back.
   */
  step(params: Float32Array, grads: Float32Array, lr: number, t: number, deviceParams?: tf.Tensor): Promise<void>;
  /** The moments, as host copies (checkpoints). */
  moments(): Promise<{ m: Float32Array; v: Float32Array }>;
  loadMoments(m: Float32Array, v: Float32Array): void;
  dispose(): Promise<void>;
}

function checkLength(what: string, a: Float32Array, n: number): void {
  if (a.length !== n) {
    throw new StrategyError(`shard optimizer: ${what} has ${a.length} values, expected ${n} (the shard length)`);
  }
}

/** AdamW on the device over a shard; moments are device tensors, one pair per decay run. */
export class DeviceShardAdamW implements ShardOptimizer {
  readonly place = 'device' as const;
  private readonly runs: DecayRun[];
  private m: tf.Tensor[];
  private v: tf.Tensor[];

  constructor(
    readonly length: number,
    decayRanges: ReadonlyArray<readonly [number, number]>,
    private readonly cfg: AdamWConfig,
  ) {
    this.runs = decayRuns(length, decayRanges);
    this.m = this.runs.map((r) => tf.zeros([r.end - r.start]));
    this.v = this.runs.map((r) => tf.zeros([r.end - r.start]));
  }

  async step(
    params: Float32Array,
    grads: Float32Array,
    lr: number,
    t: number,
    deviceParams?: tf.Tensor,
  ): Promise<void> {
    checkLength('params', params, this.length);
    checkLength('grads', grads, this.length);
    if (deviceParams && deviceParams.size !== this.length) {
      throw new StrategyError(
        `shard optimizer: device parameters have ${deviceParams.size} values, expected ${this.length}`,
      );
    }
    // Copies: the cpu backend would otherwise keep views of arrays the strategy reuses.
    const p = deviceParams ? tf.reshape(deviceParams, [-1]) : tf.tensor1d(params.slice(), 'float32');
    const g = tf.tensor1d(grads.slice(), 'float32');
    const newP: tf.Tensor[] = [];
    try {
      this.runs.forEach((run, i) => {
        const n = run.end - run.start;
        const ps = tf.slice(p, [run.start], [n]);
        const gs = tf.slice(g, [run.start], [n]);
        const r = adamwUpdate(this.cfg, ps, gs, { m: this.m[i], v: this.v[i] }, lr, t, run.decay);
        tf.dispose([ps, gs, this.m[i], this.v[i]]);
        this.m[i] = r.m;
        this.v[i] = r.v;
        newP.push(r.param);
      });
      const flat = newP.length === 1 ? newP[0] : tf.concat(newP);
      params.set((await flat.data()) as Float32Array);
      if (flat !== newP[0]) flat.dispose();
    } finally {
      tf.dispose([p, g, ...newP]);
    }
  }

  async moments(): Promise<{ m: Float32Array; v: Float32Array }> {
    const read = async (ts: tf.Tensor[]): Promise<Float32Array> => {
      const out = new Float32Array(this.length);
      for (let i = 0; i < ts.length; i++) out.set((await ts[i].data()) as Float32Array, this.runs[i].start);
      return out;
    };
    return { m: await read(this.m), v: await read(this.v) };
  }

  loadMoments(m: Float32Array, v: Float32Array): void {
    checkLength('m', m, this.length);
    checkLength('v', v, this.length);
    tf.dispose([...this.m, ...this.v]);
    this.m = this.runs.map((r) => tf.tensor1d(m.slice(r.start, r.end), 'float32'));
    this.v = this.runs.map((r) => tf.tensor1d(v.slice(r.start, r.end), 'float32'));
  }

  async dispose(): Promise<void> {
    tf.dispose([...this.m, ...this.v]);
    this.m = [];
    this.v = [];
  }
}

/**
 * Offloaded AdamW: the shard's fp32 parameters (master copy), gradients and moments in host
 * (WASM) memory. The strategy writes gradients straight into `grads` and keeps the shard in
 * `params`, so a step copies nothing.
 */
export class HostShardAdamW implements ShardOptimizer {
  readonly place = 'host' as const;
  private constructor(
    private readonly opt: HostAdamW,
    private readonly cfg: AdamWConfig,
  ) {}

  static async create(
    length: number,
    decayRanges: ReadonlyArray<readonly [number, number]>,
    cfg: AdamWConfig,
  ): Promise<HostShardAdamW> {
    return new HostShardAdamW(await HostAdamW.create({ length, threads: 'auto', decay: decayRanges }), cfg);
  }

  get length(): number {
    return this.opt.length;
  }
  /** The shard's parameters, in the kernel's memory. */
  get params(): Float32Array {
    return this.opt.params;
  }
  /** The shard's gradients, in the kernel's memory. */
  get grads(): Float32Array {
    return this.opt.grads;
  }

  async step(params: Float32Array, grads: Float32Array, lr: number, t: number): Promise<void> {
    // The master copy is here, so a device copy of the parameters is never needed.
    // The strategy hands the kernel's own views; anything else is copied in and out.
    if (grads !== this.opt.grads) {
      checkLength('grads', grads, this.length);
      this.opt.grads.set(grads);
    }
    if (params !== this.opt.params) {
      checkLength('params', params, this.length);
      this.opt.params.set(params);
    }
    const { beta1, beta2, eps, weightDecay } = this.cfg;
    await this.opt.step({ lr, beta1, beta2, eps, weightDecay }, t);
    if (params !== this.opt.params) params.set(this.opt.params);
  }

  async moments(): Promise<{ m: Float32Array; v: Float32Array }> {
    return { m: this.opt.m.slice(), v: this.opt.v.slice() };
  }

  loadMoments(m: Float32Array, v: Float32Array): void {
    checkLength('m', m, this.length);
    checkLength('v', v, this.length);
    this.opt.m.set(m);
    this.opt.v.set(v);
  }

  async dispose(): Promise<void> {
    await this.opt.close();
  }
}
