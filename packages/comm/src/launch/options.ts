// Launch options: what `zeroring launch` and `zeroring train --nproc` pass to launch(), checked
// once up front so that a typo (a rank out of range, a port of 0) fails before any worker starts,
// with a message naming the bad value and the expected one.
import { ConfigError } from '../errors.ts';

export interface LaunchOptions {
  /** Workers started on this node (torchrun's --nproc-per-node). */
  nprocPerNode: number;
  /** Nodes in the job; default 1. */
  nnodes?: number;
  /** This node's index in [0, nnodes); default 0. */
  nodeRank?: number;
  /** Address of the rendezvous store (hosted by global rank 0); default 127.0.0.1 on a single node. */
  masterAddr?: string;
  /** Port of the rendezvous store; default a free port on a single node, required for several nodes. */
  masterPort?: number;
  /** Restart the whole local group after a failure up to this many times; default 0. */
  maxRestarts?: number;
  /** Worker script: .ts (run through tsx), .js, .mjs or .cjs. */
  script: string;
  /** Arguments passed to every worker after the script. */
  args?: readonly string[];
  /** Extra environment for the workers, on top of process.env (ZERORING_TOKEN here wins over process.env). */
  env?: Readonly<Record<string, string | undefined>>;
  /** Extra node flags placed before the script (e.g. --max-old-space-size=8192). */
  nodeArgs?: readonly string[];
  /** Working directory of the workers; default process.cwd(). */
  cwd?: string;
  /** Milliseconds between SIGTERM and SIGKILL when stopping workers; default 5000. */
  gracePeriodMs?: number;
  /** Prefix put before each line of a worker's output; default `[rank R] `. */
  linePrefix?: (rank: number) => string;
  /** Where workers' stdout / stderr lines go; default process.stdout / process.stderr. */
  stdout?: NodeJS.WritableStream;
  stderr?: NodeJS.WritableStream;
  /** The launcher's own messages (failures, restarts); default a `zeroring launch: ` line on stderr. */
  onMessage?: (message: string) => void;
  /** Forward SIGINT/SIGTERM received by this process to the workers; default true. */
  forwardSignals?: boolean;
  /** Aborting stops the workers (SIGTERM, then SIGKILL after the grace period). */
  abortSignal?: AbortSignal;
}

/** LaunchOptions with every default filled in and every value checked. */
export interface ResolvedLaunchOptions {
  nprocPerNode: number;
  nnodes: number;
  nodeRank: number;
  masterAddr: string;
  masterPort: number | undefined;
  maxRestarts: number;
  script: string;
  args: readonly string[];
  env: Readonly<Record<string, string | undefined>>;
  nodeArgs: readonly string[];
  cwd: string;
  gracePeriodMs: number;
  worldSize: number;
}

function checkInt(name: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer in [${min}, ${max}]`;
    throw new ConfigError(`${name} is ${String(value)}, expected ${range}`);
  }
  return value;
}

export function resolveLaunchOptions(opts: LaunchOptions): ResolvedLaunchOptions {
  const inf = Number.MAX_SAFE_INTEGER;
  const nprocPerNode = checkInt('nproc-per-node', opts.nprocPerNode, 1, inf);
  const nnodes = checkInt('nnodes', opts.nnodes ?? 1, 1, inf);
  const nodeRank = checkInt('node-rank', opts.nodeRank ?? 0, 0, nnodes - 1);
  const maxRestarts = checkInt('max-restarts', opts.maxRestarts ?? 0, 0, inf);
  const gracePeriodMs = checkInt('grace period (ms)', opts.gracePeriodMs ?? 5000, 0, inf);
  const masterPort = opts.masterPort === undefined ? undefined : checkInt('master-port', opts.masterPort, 1, 65535);
  // Several nodes must agree on where the store is: a default that differs per machine
  // (a free port, the loopback address) would split the job silently.
  if (nnodes > 1 && masterPort === undefined) {
    throw new ConfigError(`master-port is not set, expected a port (1-65535) shared by all ${nnodes} nodes`);
  }
  if (nnodes > 1 && !opts.masterAddr) {
    throw new ConfigError(`master-addr is not set, expected the address of node 0 reachable from all ${nnodes} nodes`);
  }
  if (!opts.script) throw new ConfigError('script is empty, expected a .ts, .js, .mjs or .cjs file');
  return {
    nprocPerNode,
    nnodes,
    nodeRank,
    masterAddr: opts.masterAddr || '127.0.0.1',
    masterPort,
    maxRestarts,
    script: opts.script,
    args: opts.args ?? [],
    env: opts.env ?? {},
    nodeArgs: opts.nodeArgs ?? [],
    cwd: opts.cwd ?? process.cwd(),
    gracePeriodMs,
    worldSize: nprocPerNode * nnodes,
  };
}
