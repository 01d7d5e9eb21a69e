// @zeroring/gpt: a toy GPT as a list of blocks, a character tokenizer, corpora and sampling.
export {
  createGPT,
  crossEntropy,
  forwardAll,
  gptConfig,
  paramsToTensors,
  presets,
  type Block,
  type BlockModel,
  type GPTConfig,
  type GPTModel,
  type GPTPreset,
  type NamedTensors,
  type ParamSpec,
  type PresetName,
} from './model.ts';
export { CharTokenizer, type CharTokenizerJSON } from './tokenizer.ts';
export { CorpusError, loadCorpus, mobyDick } from './corpus.ts';
export { TextDataset, type Batch, type Segment, type Split, type TextDatasetOptions } from './dataset.ts';
export { generate, type GenerateOptions } from './sample.ts';
export { Rng, deriveSeed } from '@zeroring/core';
// The attention kernel's host loops, for benchmarks that time a fixed CPU workload.
export { attentionForward, type AttentionShape } from './attention.ts';
