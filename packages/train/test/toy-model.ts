// A small block-list model for engine tests, independent of @zeroring/gpt: token + position
// embedding, `layers` pre-LayerNorm residual MLP blocks, final LayerNorm and a head tied to the
// token embedding (so "wte" is used by the first and the last block, like the GPT's).
import * as tf from '@tensorflow/tfjs-core';
import type { Block, BlockModel, NamedTensors } from '../src/model.ts';
import type { WindowData } from '../src/trainer.ts';
import { mulberry32 } from '@zeroring/core';

export interface ToyConfig {
  vocab: number;
  seqLen: number;
  dim: number;
  layers: number;
}

function layerNorm(x: tf.Tensor, g: tf.Tensor, b: tf.Tensor): tf.Tensor {
  const { mean, variance } = tf.moments(x, -1, true);
  return tf.add(tf.mul(tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, 1e-5))), g), b);
}

/** Deterministic uniform [0,1) stream for reproducible initial values (the shared mulberry32). */
export const rand = mulberry32;

export function createToyModel(cfg: ToyConfig): BlockModel {
  const { vocab: V, seqLen: T, dim: C } = cfg;
  const blocks: Block[] = [
    {
      name: 'embed',
      params: [
        { name: 'wte', shape: [V, C] },
        { name: 'wpe', shape: [T, C] },
      ],
      forward: (p: NamedTensors, idx: tf.Tensor) => {
        const t = idx.shape[1]!;
        return tf.add(tf.gather(p.wte, idx), tf.slice(p.wpe, [0, 0], [t, C]));
      },
    },
  ];
  for (let l = 0; l < cfg.layers; l++) {
    const n = (s: string) => `h${l}.${s}`;
    blocks.push({
      name: `h${l}`,
      params: [
        { name: n('ln.g'), shape: [C] },
        { name: n('ln.b'), shape: [C] },
        { name: n('fc.w'), shape: [C, 4 * C] },
        { name: n('fc.b'), shape: [4 * C] },
        { name: n('proj.w'), shape: [4 * C, C] },
        { name: n('proj.b'), shape: [C] },
      ],
      forward: (p: NamedTensors, x: tf.Tensor) => {
        const [B, t] = x.shape;
        const h = tf.reshape(layerNorm(x, p[n('ln.g')], p[n('ln.b')]), [B * t!, C]);
        const a = tf.tanh(tf.add(tf.matMul(h, p[n('fc.w')]), p[n('fc.b')]));
        const o = tf.add(tf.matMul(a, p[n('proj.w')]), p[n('proj.b')]);
        return tf.add(x, tf.reshape(o, [B!, t!, C]));
      },
    });
  }
  blocks.push({
    name: 'head',
    params: [
      { name: 'lnf.g', shape: [C] },
      { name: 'lnf.b', shape: [C] },
      { name: 'wte', shape: [V, C] },
    ],
    forward: (p: NamedTensors, x: tf.Tensor) => {
      const [B, t] = x.shape;
      const h = tf.reshape(layerNorm(x, p['lnf.g'], p['lnf.b']), [B * t!, C]);
      return tf.reshape(tf.matMul(h, p.wte, false, true), [B!, t!, V]);
    },
  });
  return {
    blocks,
    loss(logits: tf.Tensor, targets: tf.Tensor): tf.Scalar {
      const logp = tf.logSoftmax(tf.reshape(logits, [-1, V]));
      const onehot = tf.oneHot(tf.reshape(targets, [-1]) as tf.Tensor1D, V);
      return tf.neg(tf.mean(tf.sum(tf.mul(onehot, logp), -1))) as tf.Scalar;
    },
    initParams(seed: number): Map<string, Float32Array> {
      const r = rand(seed);
      const out = new Map<string, Float32Array>();
      for (const b of blocks) {
        for (const p of b.params) {
          if (out.has(p.name)) continue;
          const size = p.shape.reduce((a, c) => a * c, 1);
          const a = new Float32Array(size);
          const isGain = p.name.endsWith('.g');
          for (let i = 0; i < size; i++) a[i] = isGain ? 1 + 0.1 * (r() - 0.5) : 0.2 * (r() - 0.5);
          out.set(p.name, a);
        }
      }
      return out;
    },
  };
}

/** Random token ids and next-token targets of shape [B, T]. */
export function toyBatch(seed: number, B: number, T: number, V: number): { input: tf.Tensor; targets: tf.Tensor } {
  const r = rand(seed);
  const ids = new Int32Array(B * T);
  const tg = new Int32Array(B * T);
  for (let i = 0; i < ids.length; i++) {
    ids[i] = Math.floor(r() * V);
    tg[i] = Math.floor(r() * V);
  }
  return { input: tf.tensor(ids, [B, T], 'int32'), targets: tf.tensor(tg, [B, T], 'int32') };
}

/** WindowData's batchAt over a token array: each window's tokens, and the next token of each as its target. */
export function batchAtTokens(tokens: Int32Array): WindowData['batchAt'] {
  return (starts, T) => {
    const input = new Int32Array(starts.length * T);
    const targets = new Int32Array(starts.length * T);
    for (let k = 0; k < starts.length; k++) {
      input.set(tokens.subarray(starts[k], starts[k] + T), k * T);
      targets.set(tokens.subarray(starts[k] + 1, starts[k] + T + 1), k * T);
    }
    return { input, targets };
  };
}
