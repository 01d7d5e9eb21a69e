// AdamW over a ZeRO rank's shard as one fused WGSL update (webgpu-kernels/adamw.ts), where the
// backend runs our WGSL programs: the device form of the shard optimizer (optim-shard.ts) in a few
// dispatches instead of a dozen kernels per run of equal decay. The moments live packed [m | v];
// a step puts the uploaded parameters in front of them, updates all three in one dispatch, keeps
// the new moments and reads the new parameters back for the all-gather (that read-back crosses
// the network anyway). Which elements decay is a bit mask of the shard's decay ranges. Scaling and
// clipping happened on the host already (clip.ts), so the kernel gets a unit coefficient.
import * as tf from '@tensorflow/tfjs-core';
import { decayMaskBits, NORM_STATS, webgpuFlatAdamW } from '@zeroring/backend';
import type { AdamWConfig } from '../optim/adamw.ts';
import { StrategyError } from '../strategy.ts';
import { flatAdamWScalars } from './optim-flat.ts';
import type { ShardOptimizer } from './optim-shard.ts';

function checkLength(what: string, n: number, length: number): void {
  if (n !== length) {
    throw new StrategyError(`shard optimizer: ${what} has ${n} values, expected ${length} (the shard length)`);
  }
}

export class FlatShardAdamW implements ShardOptimizer {
  readonly place = 'device' as const;
  /** [m | v] over the shard. */
  private mv: tf.Tensor;
  private readonly mask: tf.Tensor;

  constructor(
    readonly length: number,
    decayRanges: ReadonlyArray<readonly [number, number]>,
    private readonly cfg: AdamWConfig,
  ) {
    this.mv = tf.zeros([2 * length]);
    this.mask = tf.tensor1d(decayMaskBits(length, decayRanges), 'int32');
  }

  async step(params: Float32Array, grads: Float32Array, lr: number, t: number, deviceParams?: tf.Tensor) {
    checkLength('params', params.length, this.length);
    checkLength('grads', grads.length, this.length);
    if (deviceParams) checkLength('device parameters', deviceParams.size, this.length);
    const L = this.length;
    const unit = new Float32Array(NORM_STATS.length);
    unit[NORM_STATS.coef] = 1;
    unit[NORM_STATS.finite] = 1;
    const [state, g, stats] = tf.tidy(() => [
      tf.concat([deviceParams ? tf.reshape(deviceParams, [-1]) : tf.tensor1d(params.slice(), 'float32'), this.mv]),
      tf.tensor1d(grads.slice(), 'float32'),
      tf.tensor1d(unit, 'float32'),
    ]);
    const next = webgpuFlatAdamW(
      state,
      g,
      stats,
      {
        ...flatAdamWScalars(this.cfg, lr, t),
        decayEnd: 0,
        gradScale: 1,
        clip: false,
        gate: false,
      },
      this.mask,
    );
    tf.dispose([state, g, stats, this.mv]);
    this.mv = tf.slice(next, [L], [2 * L]);
    const p = tf.slice(next, [0], [L]);
    next.dispose();
    try {
      params.set((await p.data()) as Float32Array);
    } finally {
      p.dispose();
    }
  }

  async moments(): Promise<{ m: Float32Array; v: Float32Array }> {
    const mv = (await this.mv.data()) as Float32Array;
    return { m: mv.slice(0, this.length), v: mv.slice(this.length) };
  }

  loadMoments(m: Float32Array, v: Float32Array): void {
    checkLength('m', m.length, this.length);
    checkLength('v', v.length, this.length);
    const mv = new Float32Array(2 * this.length);
    mv.set(m);
    mv.set(v, this.length);
    this.mv.dispose();
    this.mv = tf.tensor1d(mv, 'float32');
  }

  async dispose(): Promise<void> {
    tf.dispose([this.mv, this.mask]);
  }
}
