// The contract between a model and the training engine (DESIGN.md, "Data flow").
//
// A model is a list of blocks, each a pure function of (named parameters, input). The model
// never owns its parameters: the strategy decides where they live (resident, sharded, host)
// and hands the engine the tensors a block needs just before it runs. That one shape is what
// lets DDP, ZeRO-1/2/3 and offload share one engine. It lives in the bottom package because
// @zeroring/gpt builds models to it and @zeroring/train runs them, and neither imports the other.
import type * as tf from '@tensorflow/tfjs-core';

export type NamedTensors = Record<string, tf.Tensor>;

export interface ParamSpec {
  /** Globally unique name, e.g. "h0.attn.qkv.w". A name used by two blocks is a tied parameter. */
  name: string;
  shape: number[];
}

export interface Block {
  name: string;
  /** Every parameter the block reads, in a fixed order. */
  params: ParamSpec[];
  /**
   * Pure: the output depends only on params and input; no variables, no side effects, so the
   * engine may call it again to recompute activations during backward (ZeRO-3 asks for that).
   */
  forward(params: NamedTensors, input: tf.Tensor): tf.Tensor;
}

export interface BlockModel {
  blocks: Block[];
  /** Scalar mean loss of the last block's output against the targets (parameter-free). */
  loss(output: tf.Tensor, targets: tf.Tensor): tf.Scalar;
  /** Seeded, reproducible initial values for every distinct parameter name. */
  initParams(seed: number): Map<string, Float32Array>;
}

/** Distinct parameters in first-use order (tied parameters once). */
export function uniqueParams(model: BlockModel): ParamSpec[] {
  const seen = new Map<string, ParamSpec>();
  for (const block of model.blocks) for (const p of block.params) if (!seen.has(p.name)) seen.set(p.name, p);
  return [...seen.values()];
}

export function paramCount(spec: ParamSpec): number {
  return spec.shape.reduce((a, b) => a * b, 1);
}
