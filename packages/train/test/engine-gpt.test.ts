// The blockwise engine on the real GPT (tiny preset of @zeroring/gpt): gradients equal whole-model
// tf.variableGrads on every backend present, the tied wte arrives once with "embed", and repeated
// steps leave the tensor count unchanged.
import { describe, expect, it, beforeAll } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { initNamedBackend, registerAllGradients, type BackendName } from '@zeroring/backend';
import { createGPT, gptConfig, forwardAll } from '@zeroring/gpt';
import { BlockwiseEngine, type GradSink } from '../src/engine.ts';
import { uniqueParams, type NamedTensors } from '../src/model.ts';
import { LocalStrategy } from '../src/strategies/local.ts';
import { toyBatch } from './toy-model.ts';

await registerAllGradients();
const present: BackendName[] = [];
const missing: Array<[BackendName, string]> = [];
for (const name of ['cpu', 'wasm', 'webgpu'] as const) {
  try {
    await initNamedBackend(name, 'engine-gpt test');
    present.push(name);
  } catch (err) {
    missing.push([name, (err as Error).message.split('\n')[0]]);
  }
}

describe.skipIf(missing.length === 0).each(missing)(
  'GPT engine on %s (skipped: backend unavailable)',
  (_name, reason) => {
    it(`unavailable: ${reason}`, () => {});
  },
);

const V = 40;
const model = createGPT(gptConfig('tiny', V));
const specs = uniqueParams(model);

describe.each(present)('BlockwiseEngine with GPT tiny on %s', (backend) => {
  beforeAll(async () => {
    await tf.setBackend(backend);
    await tf.ready();
  });

  it('matches tf.variableGrads of the whole GPT (relative error < 1e-5)', async () => {
    const init = model.initParams(42);
    const { input, targets } = toyBatch(7, 2, 16, V);
    const s = new LocalStrategy();
    await s.setup(model, init);
    const got = new Map<string, Float32Array>();
    const emittedAt = new Map<string, number>();
    const sink: GradSink = {
      async onBlockGrads(block, grads) {
        for (const [n, g] of Object.entries(grads)) {
          expect(got.has(n), `${n} emitted twice`).toBe(false);
          got.set(n, (await g.data()) as Float32Array);
          emittedAt.set(n, block);
          g.dispose();
        }
      },
    };
    const engine = new BlockwiseEngine(model);
    const loss = await engine.forwardBackward(input, targets, s, sink);

    const vars: Record<string, tf.Variable> = {};
    for (const sp of specs)
      vars[sp.name] = tf.variable(tf.tensor(init.get(sp.name)!, sp.shape), true, `gpt_${backend}_${sp.name}`);
    const ref = tf.variableGrads(
      () => model.loss(forwardAll(model, vars as NamedTensors, input), targets),
      Object.values(vars),
    );
    const refLoss = (await ref.value.data())[0];
    expect(Math.abs(loss - refLoss) / refLoss).toBeLessThan(1e-5);

    for (const sp of specs) {
      const want = (await ref.grads[vars[sp.name].name].data()) as Float32Array;
      const have = got.get(sp.name)!;
      let num = 0;
      let den = 0;
      for (let i = 0; i < want.length; i++) {
        num += (have[i] - want[i]) ** 2;
        den += want[i] ** 2;
      }
      expect(Math.sqrt(num / Math.max(den, 1e-30)), sp.name).toBeLessThan(1e-5);
    }
    const embed = model.blocks.findIndex((b) => b.name === 'embed');
    expect(emittedAt.get('wte')).toBe(embed);

    tf.dispose([input, targets, ref.value, ...Object.values(ref.grads), ...Object.values(vars)]);
    await s.dispose();
  });

  it('keeps tf.memory().numTensors constant over training steps', async () => {
    const s = new LocalStrategy();
    await s.setup(model, model.initParams(1));
    const engine = new BlockwiseEngine(model);
    const counts: number[] = [];
    for (let step = 0; step < 4; step++) {
      const { input, targets } = toyBatch(50 + step, 2, 16, V);
      await engine.forwardBackward(input, targets, s, s);
      await s.finishStep({ lr: 1e-3, step, maxGradNorm: 1 });
      tf.dispose([input, targets]);
      counts.push(tf.memory().numTensors);
    }
    expect(new Set(counts).size, `numTensors per step: ${counts}`).toBe(1);
    await s.dispose();
  });
});
