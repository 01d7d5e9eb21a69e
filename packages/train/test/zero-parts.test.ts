// The gradient parts of the ZeRO compositions on a real one-rank group: a gradient for a
// parameter the partition does not hold is refused (and freed) by every stage, ZeRO-1's
// reduction at the step names the parameters whose gradient never came, and after either
// refusal the strategy still trains, with no tensor left behind.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { initNamedBackend, registerAllGradients } from '@zeroring/backend';
import { initProcessGroup, type ProcessGroup } from '@zeroring/comm';
import { BlockwiseEngine } from '../src/engine.ts';
import { createZeroStrategy } from '../src/strategies/zero.ts';
import { StrategyError, type Strategy } from '../src/strategy.ts';
import { createToyModel, toyBatch } from './toy-model.ts';

const cfg = { vocab: 11, seqLen: 8, dim: 16, layers: 3 };
const model = createToyModel(cfg);
let pg: ProcessGroup;

beforeAll(async () => {
  await registerAllGradients();
  await initNamedBackend('cpu', 'test');
  pg = await initProcessGroup({ rank: 0, worldSize: 1 });
});
afterAll(() => pg.destroy());

async function oneStep(s: Strategy, step: number): Promise<number> {
  const engine = new BlockwiseEngine(model);
  const { input, targets } = toyBatch(3 + step, 4, cfg.seqLen, cfg.vocab);
  const loss = await engine.forwardBackward(input, targets, s, s);
  await s.finishStep({ lr: 1e-3, step });
  tf.dispose([input, targets]);
  return loss;
}

describe('ZeRO gradient parts', () => {
  for (const name of ['zero1', 'zero2', 'zero3']) {
    it(`${name} refuses a gradient for an unknown parameter, frees it, and trains on`, async () => {
      const s = createZeroStrategy(name, pg);
      await s.setup(model, model.initParams(1));
      const before = tf.memory().numTensors;
      const grads = { 'nope.w': tf.zeros([2, 2]), 'lnf.g': tf.zeros([cfg.dim]) };
      expect(() => s.onBlockGrads(model.blocks.length - 1, grads)).toThrow(/gradient for unknown parameter "nope.w"/);
      expect(tf.memory().numTensors).toBe(before);
      expect(Number.isFinite(await oneStep(s, 0))).toBe(true);
      await s.dispose();
    });
  }

  it('zero1 names the parameters whose gradient never came, drops the step and stays usable', async () => {
    const s = createZeroStrategy('zero1', pg);
    await s.setup(model, model.initParams(1));
    const before = tf.memory().numTensors;
    s.onBlockGrads(model.blocks.length - 1, { 'lnf.g': tf.ones([cfg.dim]), 'lnf.b': tf.ones([cfg.dim]) });
    const failed = s.finishStep({ lr: 1e-3, step: 0 });
    await expect(failed).rejects.toThrow(StrategyError);
    await expect(failed).rejects.toThrow(/finishStep at step 0: no gradient for "wte", "wpe",/);
    expect(tf.memory().numTensors).toBe(before);
    const params = await s.fullParams();
    expect(params).toEqual(model.initParams(1)); // the dropped step moved nothing
    expect(Number.isFinite(await oneStep(s, 0))).toBe(true);
    expect(await s.fullParams()).not.toEqual(params);
    await s.dispose();
  });
});
