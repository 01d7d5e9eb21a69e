export { getLogger, type Logger } from '@zeroring/core';
export {
  ZeroringError,
  PeerLostError,
  CollectiveMismatchError,
  CommTimeoutError,
  AuthError,
  ConfigError,
  type CollectiveCall,
} from './errors.ts';
export { initProcessGroup, ProcessGroup, type ReduceOptions } from './process-group.ts';
export { gridGroups, type GridGroups } from './grid.ts';
export { resolveOptions, type InitOptions, type ResolvedOptions } from './env.ts';
export type { ReduceOp, WireDtype } from './collectives/types.ts';
export {
  allReduceHook,
  bf16CompressHook,
  fp16CompressHook,
  powerSGDHook,
  PowerSGDState,
  POWERSGD_DEFAULTS,
  planCompression,
  commHookByName,
  COMM_HOOK_NAMES,
  type CommHookName,
  type PowerSGDOptions,
  type CompressionPlan,
  type LowRankSlot,
  type BucketParam,
  type CommHook,
  type GradBucket,
  type HookGroup,
} from './hooks/index.ts';
export { startStoreServer, type StoreServer, type StoreServerOptions } from './store/server.ts';
export { StoreClient, type StoreClientOptions, type StoreValue } from './store/client.ts';
export {
  launch,
  workerCommand,
  resolveLaunchOptions,
  parseNnodes,
  workerEnv,
  jobToken,
  freePort,
  describeExit,
  statusCode,
  type LaunchResult,
  type LaunchOptions,
  type ResolvedLaunchOptions,
  type NodeRange,
  type WorkerEnvSpec,
  type WorkerExit,
  type GroupResult,
} from './launch/index.ts';
// The transport beneath the process group, for tools that speak its wire protocol themselves
// (the fault soak's stranger, the token tests): authenticated connections and their limits.
export { Conn, CloseCode, type ConnOptions, type Purpose } from './transport/conn.ts';
export { listen, type Listener, type ListenOptions } from './transport/listener.ts';
export { PEER_MAX_PAYLOAD } from './transport/ring.ts';
export { STORE_MAX_PAYLOAD } from './store/protocol.ts';
export * from './bench/index.ts';
