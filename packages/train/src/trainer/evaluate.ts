// Validation loss over the fixed validation set, split across ranks, and the small cross-rank
// reductions the trainer itself needs (through TrainerComm; none with one process).
import type { ReduceOp } from '@zeroring/comm';
import * as tf from '@tensorflow/tfjs-core';
import type { BlockwiseEngine } from '../engine.ts';
import type { TrainBatches } from './batches.ts';
import type { TrainRun } from './run.ts';

/** `values` reduced over every rank with `op` (as they are with one process). */
export async function reduceValues(run: TrainRun, values: number[], op: ReduceOp): Promise<number[]> {
  const { comm } = run.opts;
  if (!comm || run.worldSize === 1) return values;
  const buf = Float32Array.from(values);
  await comm.allReduce(buf, { op });
  return [...buf];
}

/** The mean loss over the validation set (collective). */
export async function evaluate(run: TrainRun, engine: BlockwiseEngine, batches: TrainBatches): Promise<number> {
  const { cfg, dataRank: rank, dataWorld: worldSize, opts } = run;
  const { pipeline, strategy } = opts;
  let sum = 0;
  let count = 0;
  // Every rank runs the same number of forwards (a ZeRO-3 forward is collective); a rank whose
  // share ran out repeats a batch with weight 0. A pipeline's batches go through its stages, and
  // its loss is its last stage's.
  const rounds = Math.ceil(cfg.evalBatches / worldSize);
  for (let j = 0; j < rounds; j++) {
    const b = j * worldSize + rank;
    const real = b < cfg.evalBatches;
    const { input, targets } = batches.val(real ? b : b % cfg.evalBatches);
    const l = pipeline
      ? await pipeline.evalLoss(strategy, input, targets)
      : await engine.evalLoss(input, targets, strategy);
    tf.dispose([input, targets]);
    if (real && l !== undefined) {
      sum += l;
      count += 1;
    }
  }
  const [s, c] = await reduceValues(run, [sum, count], 'sum');
  return s / c;
}
