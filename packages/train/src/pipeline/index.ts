// Pipeline parallelism's pure parts: schedules (GPipe, 1F1B, interleaved 1F1B), their checker
// and simulator, and the cut of a model's blocks into stages. The executor lives elsewhere.
export * from './schedule.ts';
export { gpipeSchedule } from './gpipe.ts';
export { interleavedSchedule } from './interleaved.ts';
export { oneFOneBSchedule } from './one-f-one-b.ts';
export { namedSchedule, PIPE_SCHEDULES, type PipeScheduleName } from './named.ts';
export {
  checkSchedule,
  checkLists,
  executeSchedule,
  type ExecuteOptions,
  type PipeCommMode,
  type TimedInstr,
} from './check.ts';
export { simulateSchedule, renderTimeline, peakLiveActivations, type PipeTimeline } from './simulate.ts';
export { cutStages, type StageCut } from './cut.ts';
