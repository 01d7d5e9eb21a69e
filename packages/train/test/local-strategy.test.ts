// LocalStrategy + device AdamW: the update equals torch.optim.AdamW's formula evaluated in
// float64 (to float32 rounding), decay only on 2-D tensors, clipping, state round trip.
import { memoryStateSource } from '../src/state-source.ts';
import { describe, expect, it, beforeAll } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '@zeroring/backend';
import { BlockwiseEngine } from '../src/engine.ts';
import { LocalStrategy, clipCoefficient } from '../src/strategies/local.ts';
import { DEFAULT_ADAMW } from '../src/optim/adamw.ts';
import type { BlockModel } from '../src/model.ts';
import { createToyModel, toyBatch } from './toy-model.ts';

/** torch.optim.AdamW on one element, float64. */
function torchAdamW(p: number, g: number, m: number, v: number, lr: number, t: number, wd: number) {
  const { beta1: b1, beta2: b2, eps } = DEFAULT_ADAMW;
  p *= 1 - lr * wd;
  m = m + (1 - b1) * (g - m);
  v = b2 * v + (1 - b2) * g * g;
  const denom = Math.sqrt(v) / Math.sqrt(1 - b2 ** t) + eps;
  p -= (lr / (1 - b1 ** t)) * (m / denom);
  return { p, m, v };
}

/** One block, y = sum(w * x) + b per row: gradients known in closed form. */
function linearModel(): BlockModel {
  return {
    blocks: [
      {
        name: 'lin',
        params: [
          { name: 'w', shape: [2, 3] },
          { name: 'b', shape: [3] },
        ],
        forward: (p, x) => tf.add(tf.mul(p.w, x), p.b),
      },
    ],
    loss: (y) => tf.sum(y) as tf.Scalar,
    initParams: () =>
      new Map([
        ['w', Float32Array.from([0.5, -1, 2, 0.1, 0.2, -0.3])],
        ['b', Float32Array.from([1, 2, 3])],
      ]),
  };
}

describe('LocalStrategy', () => {
  beforeAll(async () => {
    await initBackend('cpu');
  });

  it('applies torch AdamW math (decoupled decay on 2-D only, bias correction) over 3 steps', async () => {
    const model = linearModel();
    const init = model.initParams(0);
    const s = new LocalStrategy();
    await s.setup(model, init);
    const engine = new BlockwiseEngine(model);
    const x = tf.tensor([
      [1, 2, 3],
      [4, 5, 6],
    ]);
    const noTargets = tf.scalar(0);
    const ref = new Map([...init].map(([k, a]) => [k, [...a].map((p) => ({ p, m: 0, v: 0 }))]));
    const lrs = [1e-2, 5e-3, 2e-2];
    for (let t = 1; t <= 3; t++) {
      await engine.forwardBackward(x, noTargets, s, s);
      await s.finishStep({ lr: lrs[t - 1], step: t - 1 });
      // dL/dw = x, dL/db = number of rows (2)
      ref
        .get('w')!
        .forEach((e, i) => Object.assign(e, torchAdamW(e.p, [1, 2, 3, 4, 5, 6][i], e.m, e.v, lrs[t - 1], t, 0.1)));
      ref.get('b')!.forEach((e) => Object.assign(e, torchAdamW(e.p, 2, e.m, e.v, lrs[t - 1], t, 0)));
    }
    const got = await s.fullParams();
    for (const [name, arr] of ref) {
      arr.forEach((e, i) => expect(got.get(name)![i]).toBeCloseTo(e.p, 6));
    }
    const state = await s.saveState();
    expect(state.meta.t).toBe(3);
    const s2 = new LocalStrategy();
    await s2.setup(model, init);
    await s2.loadState(memoryStateSource([state]));
    expect(await s2.fullParams()).toEqual(got);
    await s.dispose();
    await s2.dispose();
    tf.dispose([x, noTargets]);
  });

  it('clips by global norm like clip_grad_norm_', () => {
    expect(clipCoefficient(10, 1)).toBeCloseTo(0.1, 6);
    expect(clipCoefficient(0.5, 1)).toBe(1);
    expect(clipCoefficient(10, undefined)).toBe(1);
  });

  it('lowers the loss of the toy model and holds tensor count steady', async () => {
    const model = createToyModel({ vocab: 7, seqLen: 8, dim: 16, layers: 2 });
    const s = new LocalStrategy();
    await s.setup(model, model.initParams(1));
    const engine = new BlockwiseEngine(model);
    const { input, targets } = toyBatch(3, 4, 8, 7);
    const losses: number[] = [];
    const counts: number[] = [];
    for (let step = 0; step < 30; step++) {
      losses.push(await engine.forwardBackward(input, targets, s, s));
      await s.finishStep({ lr: 1e-2, step, maxGradNorm: 1 });
      counts.push(tf.memory().numTensors);
    }
    expect(losses[29]).toBeLessThan(losses[0] * 0.7);
    expect(new Set(counts.slice(1)).size).toBe(1);
    const mem = s.memory();
    expect(mem.params!.device * 3).toBe(mem.params!.device + mem.optimizer!.device);
    await s.dispose();
    tf.dispose([input, targets]);
  });
});
