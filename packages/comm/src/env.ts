// Options of initProcessGroup, defaulted from torchrun's environment (RANK, WORLD_SIZE,
// MASTER_ADDR, MASTER_PORT, ...) plus zeroring's own ZERORING_* variables, and checked up
// front so that a bad value is named with the expected one before any socket opens.
import { availableParallelism, hostname } from 'node:os';
import { ConfigError } from './errors.ts';

export interface InitOptions {
  rank?: number;
  worldSize?: number;
  masterAddr?: string;
  masterPort?: number;
  /** The job's shared secret (ZERORING_TOKEN); required when worldSize > 1. */
  token?: string;
  /**
   * A collective (or the rendezvous) that makes no progress for this long fails
   * (ZERORING_TIMEOUT_MS, default 120000).
   */
  timeoutMs?: number;
  /**
   * How long initProcessGroup waits for the store and all ranks to show up
   * (ZERORING_RENDEZVOUS_TIMEOUT_MS, default max(timeoutMs, 120000)): workers of one job may
   * start far apart, which says nothing about how fast a collective should finish.
   */
  rendezvousTimeoutMs?: number;
  /**
   * Who hosts the rendezvous store on MASTER_ADDR:MASTER_PORT: 'rank0' (default) or
   * 'external' (a launcher or another process already does; ZERORING_STORE_EXTERNAL=1).
   */
  storeHostedBy?: 'rank0' | 'external';
  /** Address to listen on for ring peers (ZERORING_BIND_ADDR); see resolveOptions. */
  bindAddr?: string;
  /** Address the other ranks dial to reach this one (ZERORING_ADVERTISE_ADDR). */
  advertiseAddr?: string;
  /** Pipelining grain in bytes (ZERORING_CHUNK_BYTES). */
  chunkBytes?: number;
  /**
   * All-reduces up to this many bytes use the gather algorithm (n-1 hops, collectives/
   * allreduce-gather.ts) instead of the ring (ZERORING_SMALL_ALLREDUCE_BYTES; default by world
   * size, see defaultSmallAllReduceBytes). Like the chunk size, it must be the same on every rank.
   */
  smallAllReduceBytes?: number;
  /**
   * Ranks on the same machine pass large payloads through shared memory (/dev/shm) instead of
   * their TCP link (ZERORING_SHM=1; 0: TCP only). Default: when this machine runs more ranks
   * than it has cores (see defaultSharedMemory). Per link: a link whose ends cannot share
   * memory stays on TCP.
   */
  sharedMemory?: boolean;
  /**
   * With several nodes of several ranks each, large all-reduces of the world group reduce
   * within each node, across nodes, then gather within each node (ZERORING_HIERARCHICAL=1; 0:
   * the flat ring). Default: hierarchical wherever the layout allows it. Must be the same on
   * every rank.
   */
  hierarchical?: boolean;
}

/** ZERORING_HIERARCHICAL as resolved: forced on or off, or chosen by the node layout. */
export type HierarchicalSetting = 'auto' | 'on' | 'off';

export interface ResolvedOptions {
  rank: number;
  worldSize: number;
  localRank: number;
  localWorldSize: number;
  masterAddr: string;
  masterPort: number;
  token: string;
  timeoutMs: number;
  rendezvousTimeoutMs: number;
  storeHostedBy: 'rank0' | 'external';
  bindAddr: string | undefined;
  advertiseAddr: string | undefined;
  chunkBytes: number;
  smallAllReduceBytes: number;
  sharedMemory: boolean;
  hierarchical: HierarchicalSetting;
  /**
   * This process's node, as the ranks compare it: the launcher's node rank (GROUP_RANK) where
   * set, which also tells apart nodes emulated on one machine, else the hostname.
   */
  node: string;
  /** Restart attempt (ZERORING_RESTART_COUNT / TORCHELASTIC_RESTART_COUNT): namespaces store keys. */
  restartCount: number;
}

export const DEFAULT_TIMEOUT_MS = 120_000;
export const DEFAULT_CHUNK_BYTES = 1024 * 1024;
export const MAX_CHUNK_BYTES = 16 * 1024 * 1024;
export const DEFAULT_MASTER_PORT = 29500;

/**
 * Up to which size the gather all-reduce beats the ring, measured on loopback on the 2-core
 * machines here (benchmarks/comm/latency.ts, both algorithms in the same run): with 2 ranks
 * both move B bytes per link and the gather's single hop wins up to about 64 KiB, beyond which
 * its whole-buffer reduction and copies cost more; with 3 or 4 ranks its (n-1)·B bytes per link
 * catch up with the ring's extra hops between 4 and 16 KiB.
 */
export function defaultSmallAllReduceBytes(worldSize: number): number {
  return worldSize <= 2 ? 64 * 1024 : 8 * 1024;
}

/**
 * Shared memory by default only where the ranks of this machine outnumber its cores. Measured
 * on the 2-core machines here, side by side: with 4 ranks the ring is CPU-bound and shared
 * memory's cheaper bytes (about 2.3 link-GB per CPU-second against 1.2 over loopback TCP) lift a
 * 64 MiB all-reduce from 0.57 to 0.95 GB/s; with 2 ranks, a core each, TCP is as fast for
 * all-reduce bandwidth and 8 % faster for DDP training of the tiny GPT (median of 7 pairs), the
 * two processes' concurrent page-cache copies costing more than the TCP stack they save.
 */
export function defaultSharedMemory(localWorldSize: number, cores: number = availableParallelism()): boolean {
  return localWorldSize > cores;
}

type Env = Readonly<Record<string, string | undefined>>;

function intFrom(name: string, raw: string | number | undefined, fallback: number | undefined): number | undefined {
  if (raw === undefined || raw === '') return fallback;
  const v = typeof raw === 'number' ? raw : Number(raw);
  if (!Number.isInteger(v)) throw new ConfigError(`${name}=${JSON.stringify(raw)} is not an integer`);
  return v;
}

export function isLoopback(addr: string): boolean {
  return (
    addr === 'localhost' || addr === '::1' || addr === '[::1]' || /^127\./.test(addr) || addr === '::ffff:127.0.0.1'
  );
}

export function resolveOptions(o: InitOptions = {}, env: Env = process.env): ResolvedOptions {
  const worldSize = intFrom('WORLD_SIZE', o.worldSize ?? env.WORLD_SIZE, 1)!;
  const rank = intFrom('RANK', o.rank ?? env.RANK, 0)!;
  if (worldSize < 1) throw new ConfigError(`WORLD_SIZE=${worldSize} is out of range, expected an integer >= 1`);
  if (rank < 0 || rank >= worldSize)
    throw new ConfigError(`RANK=${rank} is out of range for WORLD_SIZE=${worldSize}, expected 0..${worldSize - 1}`);
  const localWorldSize = intFrom('LOCAL_WORLD_SIZE', env.LOCAL_WORLD_SIZE, worldSize)!;
  const localRank = intFrom('LOCAL_RANK', env.LOCAL_RANK, rank % Math.max(1, localWorldSize))!;
  let masterAddr = o.masterAddr ?? env.MASTER_ADDR ?? '127.0.0.1';
  if (masterAddr === 'localhost' || masterAddr === '') masterAddr = '127.0.0.1';
  const masterPort = intFrom('MASTER_PORT', o.masterPort ?? env.MASTER_PORT, DEFAULT_MASTER_PORT)!;
  if (masterPort < 1 || masterPort > 65535)
    throw new ConfigError(`MASTER_PORT=${masterPort} is out of range, expected 1..65535`);
  const token = o.token ?? env.ZERORING_TOKEN ?? '';
  if (worldSize > 1 && token === '')
    throw new ConfigError(
      "ZERORING_TOKEN is not set, expected the job's shared secret on every worker " +
        '(`zeroring launch` sets it; by hand: export ZERORING_TOKEN=$(openssl rand -hex 32) on all workers)',
    );
  const timeoutMs = intFrom('ZERORING_TIMEOUT_MS', o.timeoutMs ?? env.ZERORING_TIMEOUT_MS, DEFAULT_TIMEOUT_MS)!;
  if (timeoutMs < 1)
    throw new ConfigError(
      `ZERORING_TIMEOUT_MS=${timeoutMs} is out of range, expected a positive number of milliseconds`,
    );
  const rendezvousTimeoutMs = intFrom(
    'ZERORING_RENDEZVOUS_TIMEOUT_MS',
    o.rendezvousTimeoutMs ?? env.ZERORING_RENDEZVOUS_TIMEOUT_MS,
    Math.max(timeoutMs, DEFAULT_TIMEOUT_MS),
  )!;
  if (rendezvousTimeoutMs < 1)
    throw new ConfigError(
      `ZERORING_RENDEZVOUS_TIMEOUT_MS=${rendezvousTimeoutMs} is ` +
        'out of range, expected a positive number of milliseconds',
    );
  const ext = env.ZERORING_STORE_EXTERNAL;
  const storeHostedBy = o.storeHostedBy ?? (ext === '1' || ext === 'true' ? 'external' : 'rank0');
  if (storeHostedBy !== 'rank0' && storeHostedBy !== 'external')
    throw new ConfigError(`storeHostedBy=${String(storeHostedBy)}, expected 'rank0' or 'external'`);
  const chunkBytes = intFrom('ZERORING_CHUNK_BYTES', o.chunkBytes ?? env.ZERORING_CHUNK_BYTES, DEFAULT_CHUNK_BYTES)!;
  if (chunkBytes < 4 || chunkBytes > MAX_CHUNK_BYTES || chunkBytes % 4 !== 0)
    throw new ConfigError(
      `ZERORING_CHUNK_BYTES=${chunkBytes} is out of range, expected a multiple of 4 in 4..${MAX_CHUNK_BYTES}`,
    );
  const smallAllReduceBytes = intFrom(
    'ZERORING_SMALL_ALLREDUCE_BYTES',
    o.smallAllReduceBytes ?? env.ZERORING_SMALL_ALLREDUCE_BYTES,
    defaultSmallAllReduceBytes(worldSize),
  )!;
  if (smallAllReduceBytes < 0)
    throw new ConfigError(
      `ZERORING_SMALL_ALLREDUCE_BYTES=${smallAllReduceBytes} is out ` +
        'of range, expected a number of bytes >= 0 (0: always the ring)',
    );
  const shmEnv = env.ZERORING_SHM;
  if (shmEnv !== undefined && shmEnv !== '' && !['0', '1', 'true', 'false'].includes(shmEnv))
    throw new ConfigError(`ZERORING_SHM=${JSON.stringify(shmEnv)}, expected 1 or 0 (true or false)`);
  const sharedMemory =
    o.sharedMemory ??
    (shmEnv === undefined || shmEnv === '' ? defaultSharedMemory(localWorldSize) : shmEnv === '1' || shmEnv === 'true');
  const hierEnv = env.ZERORING_HIERARCHICAL;
  if (hierEnv !== undefined && hierEnv !== '' && !['0', '1', 'true', 'false'].includes(hierEnv))
    throw new ConfigError(`ZERORING_HIERARCHICAL=${JSON.stringify(hierEnv)}, expected 1 or 0 (true or false)`);
  const hierOn = o.hierarchical ?? (hierEnv === undefined || hierEnv === '' ? undefined : /^(1|true)$/.test(hierEnv));
  const hierarchical: HierarchicalSetting = hierOn === undefined ? 'auto' : hierOn ? 'on' : 'off';
  const restartCount = intFrom(
    'ZERORING_RESTART_COUNT',
    env.ZERORING_RESTART_COUNT ?? env.TORCHELASTIC_RESTART_COUNT,
    0,
  )!;
  return {
    rank,
    worldSize,
    localRank,
    localWorldSize,
    masterAddr,
    masterPort,
    token,
    timeoutMs,
    rendezvousTimeoutMs,
    storeHostedBy,
    bindAddr: o.bindAddr ?? (env.ZERORING_BIND_ADDR || undefined),
    advertiseAddr: o.advertiseAddr ?? (env.ZERORING_ADVERTISE_ADDR || undefined),
    chunkBytes,
    smallAllReduceBytes,
    sharedMemory,
    hierarchical,
    node: env.GROUP_RANK ? `node ${env.GROUP_RANK}` : `host ${hostname()}`,
    restartCount,
  };
}
