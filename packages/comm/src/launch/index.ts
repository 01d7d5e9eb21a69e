// The launcher library: `zeroring launch` and `zeroring train --nproc` start workers with it.
export { launch, workerCommand, type LaunchResult } from './launch.ts';
export {
  resolveLaunchOptions,
  parseNnodes,
  type LaunchOptions,
  type ResolvedLaunchOptions,
  type NodeRange,
} from './options.ts';
export { workerEnv, jobToken, freePort, type WorkerEnvSpec } from './env.ts';
export { describeExit, statusCode, type WorkerExit, type GroupResult } from './worker-group.ts';
