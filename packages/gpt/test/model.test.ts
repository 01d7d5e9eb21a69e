import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { registerAllGradients } from '@zeroring/backend';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  createGPT,
  forwardAll,
  generate,
  gptConfig,
  paramsToTensors,
  presets,
  type GPTConfig,
  type GPTModel,
} from '../src/index.ts';

beforeAll(async () => {
  await registerAllGradients();
  await tf.setBackend('cpu');
  await tf.ready();
});

const V = 89; // Moby Dick's character vocabulary
const small: GPTConfig = { vocabSize: 13, blockSize: 8, nLayer: 2, nHead: 2, nEmbd: 16 };

function count(model: GPTModel): number {
  const seen = new Set<string>();
  let n = 0;
  for (const b of model.blocks)
    for (const p of b.params) {
      if (seen.has(p.name)) continue;
      seen.add(p.name);
      n += p.shape.reduce((a, c) => a * c, 1);
    }
  return n;
}

/** Independent formula: embeddings + L * (LN, qkv, proj, LN, fc, proj) + ln_f. */
function expectedCount({ vocabSize: v, blockSize: t, nLayer: l, nEmbd: c }: GPTConfig): number {
  return (
    v * c +
    t * c +
    l * (2 * c + (3 * c * c + 3 * c) + (c * c + c) + 2 * c + (4 * c * c + 4 * c) + (4 * c * c + c)) +
    2 * c
  );
}

describe('GPT presets', () => {
  it('tiny has about 0.4 M parameters and small about 10 M', () => {
    const tiny = createGPT(gptConfig('tiny', V));
    const sm = createGPT(gptConfig('small', V));
    expect(count(tiny)).toBe(expectedCount(tiny.config));
    expect(count(sm)).toBe(expectedCount(sm.config));
    expect(count(tiny)).toBeGreaterThan(350_000);
    expect(count(tiny)).toBeLessThan(450_000);
    expect(count(sm)).toBeGreaterThan(9_500_000);
    expect(count(sm)).toBeLessThan(11_500_000);
    expect(presets.tiny).toMatchObject({ nEmbd: 128, nLayer: 2, nHead: 4, blockSize: 64 });
    expect(presets.small).toMatchObject({ nEmbd: 384, nLayer: 6, nHead: 6, blockSize: 256 });
  });

  it('gpt2 is GPT-2 small at a 256-character context, about 85 M parameters', () => {
    const cfg = gptConfig('gpt2', V);
    expect(cfg).toMatchObject({ nEmbd: 768, nLayer: 12, nHead: 12, blockSize: 256 });
    expect(expectedCount(cfg)).toBeGreaterThan(84_000_000);
    expect(expectedCount(cfg)).toBeLessThan(86_000_000);
    const model = createGPT(cfg);
    expect(count(model)).toBe(expectedCount(cfg));
    expect(model.blocks).toHaveLength(12 + 2);
  });

  it('lists blocks embed, h0..h{L-1}, head with wte tied between embed and head', () => {
    const m = createGPT(gptConfig('tiny', V));
    expect(m.blocks.map((b) => b.name)).toEqual(['embed', 'h0', 'h1', 'head']);
    expect(m.blocks[0]!.params.find((p) => p.name === 'wte')?.shape).toEqual([V, 128]);
    expect(m.blocks.at(-1)!.params.find((p) => p.name === 'wte')?.shape).toEqual([V, 128]);
  });

  it('rejects an embedding width the heads do not divide', () => {
    expect(() => createGPT({ ...small, nHead: 3 })).toThrow(/nEmbd \(16\) must be divisible by nHead \(3\)/);
  });
});

describe('initialisation', () => {
  it('is reproducible by seed, GPT-2 style', () => {
    const m = createGPT(gptConfig('tiny', V));
    const a = m.initParams(1),
      b = m.initParams(1),
      c = m.initParams(2);
    expect([...a.keys()]).toEqual([...new Set(m.blocks.flatMap((bl) => bl.params.map((p) => p.name)))]);
    for (const [k, v] of a) expect(Array.from(b.get(k)!)).toEqual(Array.from(v));
    expect(Array.from(c.get('wte')!.slice(0, 8))).not.toEqual(Array.from(a.get('wte')!.slice(0, 8)));
    const std = (x: Float32Array) => Math.sqrt(x.reduce((s, y) => s + y * y, 0) / x.length);
    expect(std(a.get('wte')!)).toBeCloseTo(0.02, 3);
    expect(std(a.get('h0.attn.proj.w')!)).toBeCloseTo(0.02 / Math.sqrt(4), 3);
    expect(a.get('h1.ln2.g')!.every((x) => x === 1)).toBe(true);
    expect(a.get('h1.mlp.fc.b')!.every((x) => x === 0)).toBe(true);
  });
});

describe('forward and loss', () => {
  it('maps ids [B,T] through every block to logits [B,T,V] with loss ≈ ln V at init', () => {
    const m = createGPT(gptConfig('tiny', V));
    const params = paramsToTensors(m.initParams(0), m);
    const ids = tf.tensor2d(
      Int32Array.from({ length: 2 * 64 }, (_, i) => (i * 31) % V),
      [2, 64],
      'int32',
    );
    const targets = tf.tensor2d(
      Int32Array.from({ length: 2 * 64 }, (_, i) => (i * 17 + 3) % V),
      [2, 64],
      'int32',
    );
    let x: tf.Tensor = ids;
    const shapes: number[][] = [];
    for (const b of m.blocks) {
      const y = b.forward(params, x);
      shapes.push(y.shape);
      x = y;
    }
    expect(shapes).toEqual([
      [2, 64, 128],
      [2, 64, 128],
      [2, 64, 128],
      [2, 64, V],
    ]);
    const loss = m.loss(x, targets).dataSync()[0]!;
    expect(Math.abs(loss - Math.log(V))).toBeLessThan(0.1);
    tf.dispose([ids, targets, ...Object.values(params)]);
  });

  it('is causal: changing a later token does not change earlier logits', () => {
    const m = createGPT(small);
    const params = paramsToTensors(m.initParams(5), m);
    const a = Int32Array.from([1, 2, 3, 4, 5, 6, 7, 8]);
    const b = Int32Array.from([1, 2, 3, 4, 9, 9, 9, 9]);
    const la = forwardAll(m, params, tf.tensor2d(a, [1, 8], 'int32')).arraySync() as number[][][];
    const lb = forwardAll(m, params, tf.tensor2d(b, [1, 8], 'int32')).arraySync() as number[][][];
    for (let t = 0; t < 4; t++) for (let v = 0; v < 13; v++) expect(lb[0]![t]![v]).toBeCloseTo(la[0]![t]![v]!, 5);
    expect(lb[0]![4]![0]).not.toBeCloseTo(la[0]![4]![0]!, 6);
  });

  it('leaves no tensors behind when blocks run under tidy', () => {
    const m = createGPT(small);
    const params = paramsToTensors(m.initParams(5), m);
    const ids = tf.tensor2d(
      Int32Array.from({ length: 16 }, (_, i) => i % 13),
      [2, 8],
      'int32',
    );
    const before = tf.memory().numTensors;
    tf.tidy(() => m.loss(forwardAll(m, params, ids), ids)).dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('gradients', () => {
  it('tf.variableGrads of the whole model gives a finite gradient for every parameter', () => {
    const m = createGPT(small);
    const params = paramsToTensors(m.initParams(9), m, true);
    const ids = tf.tensor2d(
      Int32Array.from({ length: 16 }, (_, i) => (i * 5) % 13),
      [2, 8],
      'int32',
    );
    const tg = tf.tensor2d(
      Int32Array.from({ length: 16 }, (_, i) => (i * 3 + 1) % 13),
      [2, 8],
      'int32',
    );
    const { value, grads } = tf.variableGrads(
      () => m.loss(forwardAll(m, params, ids), tg),
      Object.values(params) as tf.Variable[],
    );
    expect(Number.isFinite(value.dataSync()[0])).toBe(true);
    const byName = new Map(Object.entries(params).map(([k, v]) => [(v as tf.Variable).name, k]));
    const names = Object.keys(grads).map((k) => byName.get(k));
    expect(names.sort()).toEqual(Object.keys(params).sort());
    for (const g of Object.values(grads)) {
      const d = g.dataSync();
      expect(d.every(Number.isFinite)).toBe(true);
    }
    // wte feeds both embed and head; its gradient must be non-zero on rows of used tokens.
    const wteGrad = grads[(params.wte as tf.Variable).name]!;
    expect(tf.norm(wteGrad).dataSync()[0]).toBeGreaterThan(0);
    tf.disposeVariables();
  });
});

describe('generate', () => {
  it('extends the prompt reproducibly by seed, cropping context to T', async () => {
    const m = createGPT(small);
    const params = paramsToTensors(m.initParams(1), m);
    const a = await generate(m, params, [1, 2, 3], { maxNewTokens: 12, temperature: 1, topK: 5, seed: 3 });
    const b = await generate(m, params, [1, 2, 3], { maxNewTokens: 12, temperature: 1, topK: 5, seed: 3 });
    expect(a.length).toBe(15);
    expect(Array.from(a.subarray(0, 3))).toEqual([1, 2, 3]);
    expect(Array.from(a)).toEqual(Array.from(b));
    for (const id of a) expect(id >= 0 && id < 13).toBe(true);
    const greedy = await generate(m, params, [4], { maxNewTokens: 3, temperature: 0 });
    expect(greedy.length).toBe(4);
  });
});
