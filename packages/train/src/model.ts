// The model contract lives in @zeroring/core, which @zeroring/gpt builds on too.
export {
  paramCount,
  uniqueParams,
  type Block,
  type BlockModel,
  type NamedTensors,
  type ParamSpec,
} from '@zeroring/core';
