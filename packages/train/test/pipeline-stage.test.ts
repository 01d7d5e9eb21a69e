// Pipeline stages against the whole model: the toy model (wte tied between the first and the last
// block) cut into 2 and 3 stages, M micro-batches run through the stages in GPipe order (every F,
// then every B) and in 1F1B order, the activations and their gradients handed from stage to
// stage. Each stage's gradients, with the tied embedding's summed over the stages that hold it,
// equal the blockwise engine's over the same micro-batches; the loss too. With kept tapes and with
// recompute; no tensor is left behind.
import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { initNamedBackend, registerAllGradients } from '@zeroring/backend';
import { BlockwiseEngine } from '../src/engine.ts';
import { uniqueParams } from '../src/model.ts';
import { gpipeSchedule } from '../src/pipeline/gpipe.ts';
import { oneFOneBSchedule } from '../src/pipeline/one-f-one-b.ts';
import { PipelineStage, stageModel } from '../src/pipeline/stage.ts';
import { MapSource, SumSink } from './sum-grads.ts';
import { createToyModel, toyBatch } from './toy-model.ts';

await registerAllGradients();
await initNamedBackend('cpu', 'pipeline stage test');

const cfg = { vocab: 13, seqLen: 6, dim: 8, layers: 3 };

function worstRel(a: Map<string, Float32Array>, b: Map<string, Float32Array>): number {
  expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
  let worst = 0;
  for (const [name, x] of a) {
    const y = b.get(name)!;
    const scale = Math.max(...y.map(Math.abs));
    for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i] - y[i]) / scale);
  }
  return worst;
}

describe('pipeline stages', () => {
  const model = createToyModel(cfg);
  const M = 3;
  const batches = Array.from({ length: M }, (_, m) => toyBatch(40 + m, 2, cfg.seqLen, cfg.vocab));
  const values = model.initParams(5);
  const tensors = new Map(uniqueParams(model).map((p) => [p.name, tf.tensor(values.get(p.name)!, p.shape)]));

  async function reference(): Promise<{ grads: Map<string, Float32Array>; loss: number }> {
    const engine = new BlockwiseEngine(model);
    const sink = new SumSink();
    let loss = 0;
    for (const b of batches)
      loss +=
        (await engine.forwardBackward(b.input, b.targets, new MapSource(model, tensors), sink, { gradScale: 1 / M })) /
        M;
    return { grads: sink.grads, loss };
  }

  for (const cuts of [
    [0, 2, 5],
    [0, 1, 3, 5],
  ]) {
    for (const kind of ['gpipe', '1f1b'] as const) {
      for (const recompute of [false, true]) {
        const name = `${cuts.length - 1} stages (blocks cut at ${cuts.join(', ')}), ${kind}`;
        it(`${name}${recompute ? ', recompute' : ''}`, async () => {
          const ref = await reference();
          const before = tf.memory().numTensors;
          const P = cuts.length - 1;
          const sinks = Array.from({ length: P }, () => new SumSink());
          const stages = sinks.map((sink, s) => {
            const part = stageModel(model, cuts[s], cuts[s + 1]);
            return new PipelineStage(model, cuts[s], cuts[s + 1], new MapSource(part, tensors, recompute), sink, {
              recompute,
              gradScale: 1 / M,
            });
          });
          // Tensors in flight between stages: forward[s][m] is stage s's input, backward[s][m] its output gradient.
          const forward: Array<Map<number, tf.Tensor>> = stages.map(() => new Map());
          const backward: Array<Map<number, tf.Tensor>> = stages.map(() => new Map());
          batches.forEach((b, m) => forward[0].set(m, b.input.clone()));
          const programs = (kind === 'gpipe' ? gpipeSchedule : oneFOneBSchedule)(P, M).map((p) =>
            p.map((i) => [i.op, i.micro] as const),
          );
          let loss = 0;
          // Run the stages round-robin, each as far as its inputs allow (a blocking send/recv in miniature).
          while (programs.some((p) => p.length > 0)) {
            let progressed = false;
            for (let s = 0; s < P; s++) {
              const next = programs[s][0];
              if (!next) continue;
              const [op, m] = next;
              const stage = stages[s];
              if (op === 'F') {
                const x = forward[s].get(m);
                if (!x) continue;
                forward[s].delete(m);
                const y = await stage.forward(m, x, batches[m].targets);
                if (y) forward[s + 1].set(m, y.clone());
              } else {
                const dy = backward[s].get(m);
                if (!stage.isLast && !dy) continue;
                backward[s].delete(m);
                const r = await stage.backward(m, dy);
                dy?.dispose();
                if (r.inputGrad) backward[s - 1].set(m, r.inputGrad);
                if (r.loss) {
                  loss += (await r.loss.value.data())[0] / r.loss.gradScale / M;
                  r.loss.value.dispose();
                }
              }
              programs[s].shift();
              progressed = true;
            }
            expect(progressed, 'the schedule deadlocked').toBe(true);
          }
          // The tied embedding's gradient is the sum of the first and the last stage's.
          const merged = new SumSink();
          for (const sink of sinks) {
            for (const [name, g] of sink.grads) {
              const t = tf.tensor(g);
              await merged.onBlockGrads(0, { [name]: t });
            }
          }
          expect(sinks[0].grads.has('wte') && sinks[P - 1].grads.has('wte')).toBe(true);
          expect(worstRel(merged.grads, ref.grads)).toBeLessThan(1e-5);
          expect(Math.abs(loss - ref.loss)).toBeLessThan(1e-5 * ref.loss);
          expect(stages.map((s) => s.live)).toEqual(stages.map(() => 0));
          expect(tf.memory().numTensors).toBe(before);
        });
      }
    }
  }

  it('refuses an empty or out-of-range cut, and B before F', async () => {
    expect(() => stageModel(model, 2, 2)).toThrow(/stage blocks 2\.\.1 are invalid/);
    expect(() => stageModel(model, 0, 9)).toThrow(/within 0\.\.4/);
    const stage = new PipelineStage(model, 0, 2, new MapSource(stageModel(model, 0, 2), tensors), new SumSink());
    await expect(stage.backward(0, tf.zeros([1]))).rejects.toThrow(/B of micro 0 before its F/);
  });
});
