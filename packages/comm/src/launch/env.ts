// The environment every worker sees: torchrun's names (RANK, WORLD_SIZE, LOCAL_RANK,
// LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT, GROUP_RANK) so that Slurm, Kubernetes or a user
// with `export` can start the same workers without this launcher, plus the job's secret
// (ZERORING_TOKEN) and the restart counters an elastic trainer resumes by.
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { ConfigError } from '../errors.ts';

export interface WorkerEnvSpec {
  base: Readonly<Record<string, string | undefined>>;
  rank: number;
  localRank: number;
  worldSize: number;
  localWorldSize: number;
  nodeRank: number;
  masterAddr: string;
  masterPort: number;
  token: string;
  restartCount: number;
  maxRestarts: number;
}

export function workerEnv(s: WorkerEnvSpec): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(s.base)) if (v !== undefined) env[k] = v;
  Object.assign(env, {
    RANK: String(s.rank),
    WORLD_SIZE: String(s.worldSize),
    LOCAL_RANK: String(s.localRank),
    LOCAL_WORLD_SIZE: String(s.localWorldSize),
    GROUP_RANK: String(s.nodeRank),
    MASTER_ADDR: s.masterAddr,
    MASTER_PORT: String(s.masterPort),
    ZERORING_TOKEN: s.token,
    ZERORING_RESTART_COUNT: String(s.restartCount),
    ZERORING_MAX_RESTARTS: String(s.maxRestarts),
  });
  return env;
}

/**
 * The job token: the one the user gave (all nodes of a multi-node job must share it, so it
 * cannot be invented per node), else 32 random bytes. Never logged.
 */
export function jobToken(given: string | undefined, nnodes: number): string {
  if (given !== undefined && given !== '') return given;
  if (nnodes > 1) {
    throw new ConfigError(
      `ZERORING_TOKEN is not set, expected the same secret exported on all ${nnodes} nodes ` +
        `(e.g. ZERORING_TOKEN=$(openssl rand -hex 32))`,
    );
  }
  return randomBytes(32).toString('hex');
}

/**
 * A port that was free a moment ago on `host` (the kernel picks it). Another process could take it
 * before rank 0 binds it; torchrun accepts the same small race, and a restart picks a new one.
 */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen({ host, port: 0, exclusive: true }, () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error(`could not read a free port on ${host}`))));
    });
  });
}

/**
 * Rank 0's store will listen on host:port: when that port is taken, say so before any worker
 * starts, instead of through a failed worker. Other errors (an address that is not this
 * machine's, say) are left to the store, whose message names them.
 */
export function assertStorePortFree(host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', (e: NodeJS.ErrnoException) => {
      if (e.code !== 'EADDRINUSE') return resolve();
      reject(
        new ConfigError(
          `cannot listen for the store on ${host}:${port}: the port is already in use ` +
            '(expected a free port; pass --master-port or set MASTER_PORT to a free one)',
        ),
      );
    });
    srv.listen({ host, port, exclusive: true }, () => srv.close(() => resolve()));
  });
}
