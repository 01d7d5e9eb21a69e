// A short real training run: whole-model gradients (tf.variableGrads) and tfjs Adam on the wasm
// backend, on Moby Dick. The loss must fall well below its initial ln(V).
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '@zeroring/backend';
import { describe, expect, it } from 'vitest';
import { CharTokenizer, createGPT, forwardAll, loadCorpus, paramsToTensors, Rng, TextDataset } from '../src/index.ts';

describe('training', () => {
  it('150 Adam steps on Moby Dick lower the loss from ~ln V by more than 1.2 nats', async () => {
    await initBackend('wasm', { logger: { info() {}, warn() {}, debug() {} } });
    const text = loadCorpus();
    const tok = CharTokenizer.fromText(text);
    const data = new TextDataset(tok.encode(text), { seed: 0 });
    const model = createGPT({ vocabSize: tok.vocabSize, blockSize: 32, nLayer: 2, nHead: 4, nEmbd: 64 });
    const params = paramsToTensors(model.initParams(0), model, true);
    const vars = Object.values(params) as tf.Variable[];
    const opt = tf.train.adam(3e-3);
    const rng = new Rng(0);
    const losses: number[] = [];
    for (let step = 0; step < 150; step++) {
      const b = data.batch(rng, 8, 32);
      const loss = tf.tidy(() => {
        const x = tf.tensor2d(b.input, [8, 32], 'int32');
        const y = tf.tensor2d(b.targets, [8, 32], 'int32');
        const { value, grads } = tf.variableGrads(() => model.loss(forwardAll(model, params, x), y), vars);
        opt.applyGradients(grads as Parameters<typeof opt.applyGradients>[0]);
        return value;
      });
      losses.push((await loss.data())[0]!);
      loss.dispose();
    }
    const first = losses[0]!;
    const last10 = losses.slice(-10).reduce((a, b) => a + b, 0) / 10;
    expect(Math.abs(first - Math.log(tok.vocabSize))).toBeLessThan(0.15);
    expect(last10).toBeLessThan(first - 1.2);
    opt.dispose();
    tf.disposeVariables();
  });
});
