// Strategy wrappers (the non-finite guard, the fault hook) must keep what the inner strategy says
// about itself: a guard that dropped ZeRO-3's recomputeActivations made the engine keep every
// block's activations behind the CLI's back. Checked on a real ZeRO-3 over a one-rank group.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { initNamedBackend, registerAllGradients } from '@zeroring/backend';
import { initProcessGroup, type ProcessGroup } from '@zeroring/comm';
import { BlockwiseEngine } from '../src/engine.ts';
import { NonFiniteGuard } from '../src/nonfinite.ts';
import { withKillHook } from '../src/faults.ts';
import { DDPStrategy } from '../src/strategies/ddp.ts';
import { createZeroStrategy } from '../src/strategies/zero.ts';
import type { Strategy } from '../src/strategy.ts';
import { createToyModel, toyBatch } from './toy-model.ts';

const model = createToyModel({ vocab: 11, seqLen: 8, dim: 16, layers: 3 });
let pg: ProcessGroup;

beforeAll(async () => {
  await registerAllGradients();
  await initNamedBackend('cpu', 'test');
  pg = await initProcessGroup({ rank: 0, worldSize: 1 });
});
afterAll(() => pg.destroy());

/** Activation bytes the engine kept for one forward/backward through `strategy`. */
async function activationBytes(strategy: Strategy): Promise<number> {
  await strategy.setup(model, model.initParams(1));
  const engine = new BlockwiseEngine(model);
  const { input, targets } = toyBatch(2, 4, 8, 11);
  await engine.forwardBackward(input, targets, strategy, strategy);
  await strategy.finishStep({ lr: 1e-3, step: 0 });
  tf.dispose([input, targets]);
  await strategy.dispose();
  return engine.lastActivationBytes;
}

describe('strategy wrappers', () => {
  it('forward recomputeActivations and noSync from the inner strategy', () => {
    const zero3 = createZeroStrategy('zero3', pg, { offload: false });
    const ddp = new DDPStrategy(pg);
    for (const wrap of [
      (s: Strategy) => new NonFiniteGuard(s, { skip: false }),
      (s: Strategy) => withKillHook(s, { killAtStep: 99 }),
    ]) {
      expect(wrap(zero3).recomputeActivations).toBe(true);
      expect(wrap(ddp).recomputeActivations).toBe(false);
      expect(typeof wrap(ddp).noSync).toBe('function');
      expect(wrap(zero3).name).toBe('zero3');
    }
  });

  it('a guarded ZeRO-3 keeps only block inputs, as ZeRO-3 alone does, far less than a guarded DDP', async () => {
    const bare = await activationBytes(createZeroStrategy('zero3', pg, { offload: false }));
    const guarded = await activationBytes(
      new NonFiniteGuard(createZeroStrategy('zero3', pg, { offload: false }), { skip: false }),
    );
    const ddp = await activationBytes(new NonFiniteGuard(new DDPStrategy(pg), { skip: false }));
    expect(guarded).toBe(bare);
    expect(guarded).toBeGreaterThan(0);
    expect(ddp).toBeGreaterThan(3 * guarded);
  });
});
