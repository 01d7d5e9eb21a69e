// A nanoGPT-style character transformer, written as a list of blocks:
//   embed (wte + wpe), h0..hL-1 (pre-LayerNorm causal blocks), head (ln_f, tied to wte)
// Each block is a pure function of (named parameters, input), the model contract of
// @zeroring/core: the engine and the strategies decide where parameters live, the model only
// computes. The tied parameter is simply the name "wte" listed by both "embed" and "head".
// Details: docs/internals.md#model
import * as tf from '@tensorflow/tfjs-core';
import { causalSelfAttention } from './attention.ts';
import { gelu, layerNorm, linear, matMulTransposed, softmaxCrossEntropy, tokenPositionEmbedding } from './ops.ts';
import { Rng, deriveSeed, type Block, type BlockModel, type NamedTensors, type ParamSpec } from '@zeroring/core';

export type { Block, BlockModel, NamedTensors, ParamSpec };

// ---- configuration as data ----

export interface GPTConfig {
  /** Number of distinct tokens (the tokenizer's vocabSize). */
  vocabSize: number;
  /** Context length T: the longest sequence the model sees (size of wpe). */
  blockSize: number;
  nLayer: number;
  nHead: number;
  /** Embedding width C; nHead must divide it. */
  nEmbd: number;
}

export type GPTPreset = Omit<GPTConfig, 'vocabSize'>;

export const presets = {
  /** ~0.4 M parameters with a ~90-character vocabulary. */
  tiny: { nEmbd: 128, nLayer: 2, nHead: 4, blockSize: 64 },
  /** ~10.8 M parameters with a ~90-character vocabulary. */
  small: { nEmbd: 384, nLayer: 6, nHead: 6, blockSize: 256 },
  /**
   * GPT-2 small's body (C 768, 12 layers, 12 heads) at a 256-character context: ~85 M parameters
   * with a ~90-character vocabulary (GPT-2's 124 M are mostly its 50k-token embedding). For GPUs.
   */
  gpt2: { nEmbd: 768, nLayer: 12, nHead: 12, blockSize: 256 },
} as const satisfies Record<string, GPTPreset>;

export type PresetName = keyof typeof presets;

export function gptConfig(preset: PresetName, vocabSize: number): GPTConfig {
  const p = presets[preset];
  if (p === undefined)
    throw new RangeError(
      `unknown model preset ${JSON.stringify(preset)}; expected one of ${Object.keys(presets).join(', ')}`,
    );
  return { ...p, vocabSize };
}

export interface GPTModel extends BlockModel {
  config: GPTConfig;
}

// ---- layers ----
// linear, layerNorm, gelu, tokenPositionEmbedding, matMulTransposed and softmaxCrossEntropy come
// from ./ops.ts: the textbook math with hand-written gradients (its header says why each is so).

/** Causal multi-head self-attention of x [B*T, C]: qkv projection, fused attention, output projection. */
function attention(p: NamedTensors, prefix: string, x: tf.Tensor2D, B: number, T: number, cfg: GPTConfig): tf.Tensor2D {
  const qkv = linear(x, p[`${prefix}.qkv.w`]!, p[`${prefix}.qkv.b`]!); // [B*T, 3C]: q | k | v
  const y = causalSelfAttention(qkv, { B, T, H: cfg.nHead }); // [B*T, C], heads side by side
  return linear(y, p[`${prefix}.proj.w`]!, p[`${prefix}.proj.b`]!);
}

function mlp(p: NamedTensors, prefix: string, x: tf.Tensor2D): tf.Tensor2D {
  const h = gelu(linear(x, p[`${prefix}.fc.w`]!, p[`${prefix}.fc.b`]!));
  return linear(h, p[`${prefix}.proj.w`]!, p[`${prefix}.proj.b`]!);
}

// ---- the model ----

export function createGPT(config: GPTConfig): GPTModel {
  const cfg = validate(config);
  const { vocabSize: V, blockSize, nLayer: L, nEmbd: C } = cfg;

  const embed: Block = {
    name: 'embed',
    params: [
      { name: 'wte', shape: [V, C] },
      { name: 'wpe', shape: [blockSize, C] },
    ],
    forward: (p, ids) => {
      const [B, T] = ids.shape as [number, number];
      checkContext(T, blockSize);
      const pos = T === blockSize ? p.wpe! : tf.slice(p.wpe!, [0, 0], [T, C]);
      return tokenPositionEmbedding(ids, p.wte!, pos);
    },
  };

  const layers: Block[] = [];
  for (let l = 0; l < L; l++) {
    const n = `h${l}`;
    layers.push({
      name: n,
      params: [
        { name: `${n}.ln1.g`, shape: [C] },
        { name: `${n}.ln1.b`, shape: [C] },
        { name: `${n}.attn.qkv.w`, shape: [C, 3 * C] },
        { name: `${n}.attn.qkv.b`, shape: [3 * C] },
        { name: `${n}.attn.proj.w`, shape: [C, C] },
        { name: `${n}.attn.proj.b`, shape: [C] },
        { name: `${n}.ln2.g`, shape: [C] },
        { name: `${n}.ln2.b`, shape: [C] },
        { name: `${n}.mlp.fc.w`, shape: [C, 4 * C] },
        { name: `${n}.mlp.fc.b`, shape: [4 * C] },
        { name: `${n}.mlp.proj.w`, shape: [4 * C, C] },
        { name: `${n}.mlp.proj.b`, shape: [C] },
      ],
      forward: (p, input) => {
        const [B, T] = input.shape as [number, number, number];
        let x = tf.reshape(input, [B * T, C]) as tf.Tensor2D;
        x = tf.add(x, attention(p, `${n}.attn`, layerNorm(x, p[`${n}.ln1.g`]!, p[`${n}.ln1.b`]!), B, T, cfg));
        x = tf.add(x, mlp(p, `${n}.mlp`, layerNorm(x, p[`${n}.ln2.g`]!, p[`${n}.ln2.b`]!)));
        return tf.reshape(x, [B, T, C]);
      },
    });
  }

  const head: Block = {
    name: 'head',
    params: [
      { name: 'ln_f.g', shape: [C] },
      { name: 'ln_f.b', shape: [C] },
      { name: 'wte', shape: [V, C] }, // tied to the token embedding
    ],
    forward: (p, input) => {
      const [B, T] = input.shape as [number, number, number];
      const x = layerNorm(tf.reshape(input, [B * T, C]) as tf.Tensor2D, p['ln_f.g']!, p['ln_f.b']!);
      return tf.reshape(matMulTransposed(x, p.wte as tf.Tensor2D), [B, T, V]);
    },
  };

  const blocks = [embed, ...layers, head];

  return {
    config: cfg,
    blocks,
    loss: (logits, targets) => crossEntropy(logits, targets),
    initParams: (seed) => initParams(blocks, cfg, seed),
  };
}

/** Mean cross-entropy of logits [..., V] against integer targets [...] (see ops.ts). */
export function crossEntropy(logits: tf.Tensor, targets: tf.Tensor): tf.Scalar {
  const V = logits.shape[logits.shape.length - 1]!;
  const N = logits.size / V;
  if (targets.size !== N)
    throw new RangeError(
      `targets have ${targets.size} entries; expected ${N} (logits ${JSON.stringify(logits.shape)})`,
    );
  return tf.tidy(() =>
    softmaxCrossEntropy(tf.reshape(logits, [N, V]) as tf.Tensor2D, tf.reshape(targets, [N]) as tf.Tensor1D),
  );
}

/**
 * GPT-2 initialisation: weights normal(0, 0.02), the two residual output projections of each
 * layer scaled by 1/sqrt(2L) (so the residual stream's variance does not grow with depth),
 * LayerNorm gains 1, biases and LayerNorm shifts 0. Each parameter draws from its own seeded
 * stream (seed, parameter index), so adding a layer does not change the others' values.
 */
function initParams(blocks: Block[], cfg: GPTConfig, seed: number): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  const residualStd = 0.02 / Math.sqrt(2 * cfg.nLayer);
  let index = 0;
  for (const block of blocks) {
    for (const spec of block.params) {
      if (out.has(spec.name)) continue; // tied: initialised once
      const n = spec.shape.reduce((a, b) => a * b, 1);
      const values = new Float32Array(n);
      const name = spec.name;
      if (name.endsWith('.g')) values.fill(1);
      else if (name.endsWith('.b')) values.fill(0);
      else {
        const std = name.endsWith('attn.proj.w') || name.endsWith('mlp.proj.w') ? residualStd : 0.02;
        const rng = new Rng(deriveSeed(seed, index));
        for (let i = 0; i < n; i++) values[i] = rng.normal() * std;
      }
      out.set(name, values);
      index++;
    }
  }
  return out;
}

function validate(cfg: GPTConfig): GPTConfig {
  for (const key of ['vocabSize', 'blockSize', 'nLayer', 'nHead', 'nEmbd'] as const) {
    const v = cfg[key];
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`GPTConfig.${key} must be a positive integer, got ${v}`);
  }
  if (cfg.nEmbd % cfg.nHead !== 0)
    throw new RangeError(`GPTConfig.nEmbd (${cfg.nEmbd}) must be divisible by nHead (${cfg.nHead})`);
  return { ...cfg };
}

function checkContext(T: number, blockSize: number): void {
  if (T > blockSize) throw new RangeError(`sequence length ${T} exceeds the model's blockSize ${blockSize}`);
}

/** Run all blocks in order (inference, sampling, whole-model gradients in tests and benchmarks). */
export function forwardAll(model: BlockModel, params: NamedTensors, ids: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    let x: tf.Tensor = ids;
    for (const block of model.blocks) x = block.forward(params, x);
    return x;
  });
}

/** Upload a Map of initial values as tensors (or variables, for tf.variableGrads). */
export function paramsToTensors(
  values: Map<string, Float32Array>,
  model: BlockModel,
  asVariables = false,
): NamedTensors {
  const shapes = new Map<string, number[]>();
  for (const b of model.blocks) for (const p of b.params) shapes.set(p.name, p.shape);
  const out: NamedTensors = {};
  for (const [name, v] of values) {
    const shape = shapes.get(name);
    if (!shape) throw new RangeError(`parameter ${JSON.stringify(name)} is not used by any block of this model`);
    const t = tf.tensor(v, shape, 'float32');
    out[name] = asVariables ? tf.variable(t, true) : t;
    if (asVariables) t.dispose();
  }
  return out;
}
