// Stage cuts by measured time (--pp-balance time): on the toy model with its first residual block
// made about 40 times as costly as the others (the same matmuls repeated, so its parameter count
// stays that of its neighbours), the timing puts that block's cost where it is, and the cut by time
// gives the block a stage of its own where the cut by parameter count pairs it with another.
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '@zeroring/backend';
import { cutByTime, measureBlockMs } from '../src/pipeline/balance.ts';
import { cutStages } from '../src/pipeline/cut.ts';
import type { BlockModel } from '../src/model.ts';
import { createToyModel, toyBatch } from './toy-model.ts';

const CFG = { vocab: 16, seqLen: 16, dim: 32, layers: 4 };

/** The toy model with block `slow` running its forward `times` times (the last result kept). */
function withSlowBlock(model: BlockModel, slow: number, times: number): BlockModel {
  const blocks = model.blocks.map((b, i) =>
    i !== slow
      ? b
      : {
          ...b,
          forward: (p: Parameters<typeof b.forward>[0], x: tf.Tensor) => {
            let y = b.forward(p, x);
            for (let k = 1; k < times; k++) y = tf.add(tf.mul(y, 0), b.forward(p, x));
            return y;
          },
        },
  );
  return { ...model, blocks };
}

beforeAll(async () => {
  await initBackend('cpu');
});

describe('cut by measured time', () => {
  it('times each block where it runs, and cuts the costly block off', async () => {
    const model = withSlowBlock(createToyModel(CFG), 1, 40);
    const batch = toyBatch(3, 4, CFG.seqLen, CFG.vocab);
    const ms = await measureBlockMs(model, model.initParams(1), batch);
    tf.dispose([batch.input, batch.targets]);
    expect(ms).toHaveLength(model.blocks.length);
    const others = ms.filter((_, i) => i !== 1);
    expect(ms[1]).toBeGreaterThan(5 * Math.max(...others));

    const byParams = cutStages(model.blocks, 3);
    const byTime = cutByTime(model, ms, 3);
    expect(byTime.map((c) => [c.first, c.end])).not.toEqual(byParams.map((c) => [c.first, c.end]));
    expect(byTime.find((c) => c.first <= 1 && c.end > 1)).toMatchObject({ first: 1, end: 2 });
    // The counts stay parameter counts, summing to the model's.
    const total = byParams.reduce((a, c) => a + c.params, 0);
    expect(byTime.reduce((a, c) => a + c.params, 0)).toBe(total);
  });
});
