// The windows a rank reads. Training: step s reads the window stream's positions [s·G, (s+1)·G)
// for the plan's global batch G (sampler.ts, batch-plan.ts), micro-batch by micro-batch, and this
// rank its even share of each, or its part of an uneven split (the plan's, config.batchSplit, or
// balanceBatch moving it toward the faster ranks, batch-balance.ts). Validation: a fixed seeded
// set of windows, batch j going to rank j mod N.
// Everything here is a pure function of (seed, step), so a resumed run reads what an
// uninterrupted one would.
import * as tf from '@tensorflow/tfjs-core';
import { BatchBalancer } from '../batch-balance.ts';
import { fixedWindows, mixSeed, WindowStream } from '../sampler.ts';
import { rankRange } from './batch-plan.ts';
import type { TrainRun } from './run.ts';

/** This rank's range of a step's windows. */
export interface StepShare {
  /** Windows each rank reads, when they are split unevenly (recorded in the metrics). */
  batchSplit?: number[];
  offset: number;
  count: number;
  /**
   * count · W / micro: the average all-reduce divides by W, so a rank holding count of a
   * micro-batch's windows weighs its mean gradient (and loss) by this, and the average is the
   * mean over all of them.
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
  private readonly stream: WindowStream;
  private readonly valChoice: Int32Array;

  /** `resumedSplit`: the split a resumed balancing run had reached, to start from. */
  constructor(
    private readonly run: TrainRun,
    resumedSplit?: number[],
  ) {
    const { cfg, dataWorld: worldSize, T, B, opts, batch } = run;
    this.trainStarts = opts.data.windowStarts('train', T);
    this.valStarts = opts.data.windowStarts('val', T);
    this.stream = new WindowStream(this.trainStarts.length, mixSeed(cfg.seed, 1));
    const initial = resumedSplit ?? (batch.resplit ? batch.split : (cfg.batchSplit ?? batch.split));
    if (initial || (cfg.balanceBatch && worldSize > 1)) {
      this.balancer = new BatchBalancer({ total: batch.micro, worldSize, initial });
    }
    this.valChoice = fixedWindows(this.valStarts.length, cfg.evalBatches * B, mixSeed(cfg.seed, 2));
  }

  /** This rank's range of the current step's windows. */
  share(): StepShare {
    const { dataRank: rank, dataWorld: worldSize, batch } = this.run;
    const batchSplit = this.balancer ? [...this.balancer.split] : undefined;
    const per = batch.micro / worldSize;
    const { offset, count } = batchSplit ? rankRange(batchSplit, rank) : { offset: rank * per, count: per };
    return { batchSplit, offset, count, share: (count * worldSize) / batch.micro };
  }

  /**
   * Micro-batch m of `step`: stream positions step·G + m·micro onwards, so the same windows, in
   * the same order, as a run with accum times the batch size (or another world size) would read.
   */
  train(step: number, m: number, range: StepShare): Batch {
    const { global, micro } = this.run.batch;
    const idx = this.stream.windows(step * global + m * micro + range.offset, range.count);
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
