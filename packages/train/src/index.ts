export * from './model.ts';
export * from './engine.ts';
export * from './strategy.ts';
export * from './events.ts';
export { LocalStrategy, globalSquaredNorm, clipCoefficient, type LocalStrategyOptions } from './strategies/local.ts';
export * from './optim/adamw.ts';
export * from './sampler.ts';
export {
  BatchBalancer,
  BatchSplitError,
  proportionalSplit,
  validateSplit,
  type BatchBalancerOptions,
} from './batch-balance.ts';
export { mulberry32 } from '@zeroring/core';
export * from './schedule.ts';
export * from './checkpoint.ts';
export * from './checkpoint-source.ts';
export * from './state-source.ts';
export * from './consolidated.ts';
export * from './trainer.ts';
export { DDPStrategy, type DDPComm, type DDPStrategyOptions } from './strategies/ddp.ts';
export {
  planBuckets,
  gradientOrder,
  DEFAULT_BUCKET_BYTES,
  DEFAULT_FIRST_BUCKET_BYTES,
  BucketError,
  type Bucket,
  type BucketCaps,
  type BucketPlan,
  type BucketSlot,
  type OrderedParam,
} from './strategies/buckets.ts';
export {
  DistributedDataParallel,
  type DistributedDataParallelOptions,
  type StepOptions,
} from './distributed-data-parallel.ts';
export { ShardedStrategy, type ShardComm, type ShardedStrategyOptions, type ZeroStage } from './strategies/sharded.ts';
export {
  createZeroStrategy,
  isZeroStrategy,
  Zero1Strategy,
  Zero2Strategy,
  Zero3Strategy,
  ZERO_STRATEGIES,
  type ZeroStrategyName,
} from './strategies/zero.ts';
export { StrategyWrapper } from './strategy-wrapper.ts';
export { NonFiniteGuard, NonFiniteGradientError, type NonFiniteComm, type NonFiniteGuardOptions } from './nonfinite.ts';
export { faultPlanFromEnv, withKillHook, type FaultPlan } from './faults.ts';
export {
  createStrategy,
  needsProcessGroup,
  STRATEGY_NAMES,
  type StrategyComm,
  type StrategyName,
} from './strategies/create.ts';
export { estimateMemory, estimateStrategy, formatBytes, type EstimateInput, type MemoryEstimate } from './memory.ts';
export { FlatPartition } from './partition.ts';
export { HostAdamW } from './optim/host-adamw.ts';
export { adamwStepPlain, decayRuns, type AdamWHyper } from './optim/host-adamw-loops.ts';
export { median, paramChecksum } from './metrics.ts';
export { PipelineStage, stageModel, type StageOptions } from './pipeline/stage.ts';
export { PipelineStageStrategy, type PipelineComm, type StagePlace } from './pipeline/stage-strategy.ts';
export { PipelineRun, type PipelineOptions, type PipelineStepResult } from './pipeline/runtime.ts';
export { cutByTime, measureBlockMs } from './pipeline/balance.ts';
export * from './pipeline/index.ts';
export {
  runStageStep,
  type Instruction,
  type PipeComm,
  type StageStepOptions,
  type StageStepStats,
} from './pipeline/executor.ts';
