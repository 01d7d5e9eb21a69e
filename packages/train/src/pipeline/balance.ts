// Stage cuts balanced by measured time rather than by parameter count: one block's forward and
// backward can cost far more than its parameters say (attention grows with the window, the
// output projection with the vocabulary). Each block is timed between the engine asking for its
// parameters and giving them back, forward and backward, over a few passes of a real batch; the
// first pass only warms up. On a backend that queues work (WebGPU) these are enqueue times.
import * as tf from '@tensorflow/tfjs-core';
import type { GradSink, ParamSource, Phase } from '../engine-contract.ts';
import { BlockwiseEngine } from '../engine.ts';
import { uniqueParams, type BlockModel, type NamedTensors } from '../model.ts';
import { median } from '../metrics.ts';
import { cutStages, type StageCut } from './cut.ts';

/** Each block's median forward-plus-backward milliseconds over `passes` passes of one batch. */
export async function measureBlockMs(
  model: BlockModel,
  params: Map<string, Float32Array>,
  batch: { input: tf.Tensor; targets: tf.Tensor },
  passes = 3,
): Promise<number[]> {
  const tensors = new Map(uniqueParams(model).map((s) => [s.name, tf.tensor(params.get(s.name)!, s.shape)]));
  const n = model.blocks.length;
  const samples: number[][] = Array.from({ length: n }, () => []);
  const started = new Map<string, number>();
  let total = new Array<number>(n).fill(0);
  const source: ParamSource = {
    acquire(block: number, phase: Phase): NamedTensors {
      started.set(`${block}${phase}`, performance.now());
      return Object.fromEntries(model.blocks[block]!.params.map((p) => [p.name, tensors.get(p.name)!]));
    },
    release(block: number, phase: Phase): void {
      total[block]! += performance.now() - started.get(`${block}${phase}`)!;
    },
  };
  const sink: GradSink = { onBlockGrads: (_b, grads) => tf.dispose(Object.values(grads)) };
  const engine = new BlockwiseEngine(model);
  try {
    for (let p = 0; p <= passes; p++) {
      total = new Array<number>(n).fill(0);
      const loss = await engine.forwardBackwardOnDevice(batch.input, batch.targets, source, sink);
      await loss.value.data();
      loss.value.dispose();
      if (p > 0) total.forEach((ms, i) => samples[i]!.push(ms));
    }
  } finally {
    tf.dispose([...tensors.values()]);
  }
  return samples.map((s) => median(s));
}

/** Stages of about equal measured time (cutStages over the blocks' times), with their parameter counts. */
export function cutByTime(model: BlockModel, blockMs: readonly number[], stages: number): StageCut[] {
  const byParams = cutStages(model.blocks, model.blocks.length);
  const cuts = cutStages(
    blockMs.map((ms) => Math.max(1, Math.round(ms * 1000))),
    stages,
  );
  return cuts.map((c) => ({ ...c, params: byParams.slice(c.first, c.end).reduce((a, x) => a + x.params, 0) }));
}
