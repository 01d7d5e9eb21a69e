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
export { resolveOptions, type InitOptions, type ResolvedOptions } from './env.ts';
export type { ReduceOp } from './collectives/types.ts';
export { startStoreServer, type StoreServer, type StoreServerOptions } from './store/server.ts';
export { StoreClient, type StoreClientOptions, type StoreValue } from './store/client.ts';
