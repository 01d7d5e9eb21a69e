// The windows a rank reads. Training: the distributed sampler fixes each step's global batch
// independent of the world size, and this rank reads its even share of it, or its part of an
// uneven split (config.batchSplit, or balanceBatch moving it toward the faster ranks,
// batch-balance.ts). Validation: a fixed seeded set of windows, batch j going to rank j mod N.
// Everything here is a pure function of (seed, step), so a resumed run reads what an
// uninterrupted one would.
import * as tf from '@tensorflow/tfjs-core';
import { BatchBalancer } from '../batch-balance.ts';
import { DistributedSampler, fixedWindows, mixSeed } from '../sampler.ts';
import type { TrainRun } from './run.ts';

/** This rank's range of a step's windows. */
export interface StepShare {
  /** Windows each rank reads, when they are split unevenly (recorded in the metrics). */
  batchSplit?: number[];
  offset: number;
  count: number;
  /**
   * count / B: the average all-reduce divides by W, so a rank holding count of the W·B windows
   * weighs its mean gradient (and loss) by this, and the average is the mean over all of them.
   */
  share: number;
}

export interface Batch {
  input: tf.Tensor;
  targets: tf.Tensor;
}

export class TrainBatches {
  /** Holds the split (validating config.batchSplit); it only moves with balanceBatch over several ranks. */
  readonly balancer?: BatchBalancer;
  private readonly trainStarts: Int32Array;
  private readonly valStarts: Int32Array;
  private readonly sampler: DistributedSampler;
  private readonly valChoice: Int32Array;

  /** `resumedSplit`: the split a resumed balancing run had reached, to start from. */
  constructor(
    private readonly run: TrainRun,
    resumedSplit?: number[],
  ) {
    const { cfg, rank, worldSize, T, B, opts } = run;
    this.trainStarts = opts.data.windowStarts('train', T);
    this.valStarts = opts.data.windowStarts('val', T);
    const numWindows = this.trainStarts.length;
    this.sampler = new DistributedSampler({ numWindows, batchSize: B, rank, worldSize, seed: mixSeed(cfg.seed, 1) });
    if (cfg.batchSplit || (cfg.balanceBatch && worldSize > 1)) {
      this.balancer = new BatchBalancer({ total: worldSize * B, worldSize, initial: resumedSplit ?? cfg.batchSplit });
    }
    this.valChoice = fixedWindows(this.valStarts.length, cfg.evalBatches * B, mixSeed(cfg.seed, 2));
  }

  /** This rank's range of the current step's windows. */
  share(): StepShare {
    const { rank, B } = this.run;
    const batchSplit = this.balancer ? [...this.balancer.split] : undefined;
    const count = batchSplit ? batchSplit[rank] : B;
    const offset = batchSplit ? batchSplit.slice(0, rank).reduce((a, n) => a + n, 0) : rank * B;
    return { batchSplit, offset, count, share: count / B };
  }

  /**
   * Micro-batch m of `step`: the sampler's batch step*accum+m, so the same windows, in the same
   * order, as a run with accum times the batch size would read.
   */
  train(step: number, m: number, range: StepShare): Batch {
    const idx = this.sampler.stepWindows(step * this.run.accum + m, range.offset, range.count);
    return this.make(Array.from(idx, (i) => this.trainStarts[i]));
  }

  /** Validation batch b of the fixed set. */
  val(b: number): Batch {
    const { B } = this.run;
    return this.make(Array.from(this.valChoice.subarray(b * B, (b + 1) * B), (i) => this.valStarts[i]));
  }

  private make(starts: ArrayLike<number>): Batch {
    const { T } = this.run;
    const b = this.run.opts.data.batchAt(starts, T);
    return {
      input: tf.tensor(b.input, [starts.length, T], 'int32'),
      targets: tf.tensor(b.targets, [starts.length, T], 'int32'),
    };
  }
}
