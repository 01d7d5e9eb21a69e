// Launch options: what `zeroring launch` and `zeroring train --nproc` pass to launch(), checked
// once up front so that a typo (a rank out of range, a port of 0) fails before any worker starts,
// with a message naming the bad value and the expected one.
import { ConfigError } from '../errors.ts';

/** An elastic job's node count: any number from min to max nodes (torchrun's `--nnodes MIN:MAX`). */
export interface NodeRange {
  min: number;
  max: number;
}

/** `--nnodes` as typed: `M` (a fixed M nodes) or `MIN:MAX` (elastic). */
export function parseNnodes(text: string): number | NodeRange {
  const m = /^\s*(\d+)\s*(?::\s*(\d+)\s*)?$/.exec(text);
  const min = Number(m?.[1]);
  const max = m?.[2] === undefined ? min : Number(m[2]);
  if (!m || !Number.isSafeInteger(max) || min < 1 || max < min) {
    throw new ConfigError(`nnodes '${text}' is not valid, expected M or MIN:MAX with 1 <= MIN <= MAX (e.g. 2:4)`);
  }
  return m[2] === undefined ? min : { min, max };
}

/** The elastic rendezvous, filled in. */
export interface ElasticOptions {
  minNodes: number;
  maxNodes: number;
  /** After MIN nodes have joined a round, how long it still waits for more (until MAX). */
  windowMs: number;
  /** How long a round waits for MIN nodes before the job fails. */
  timeoutMs: number;
}

export const DEFAULT_RDZV_WINDOW_MS = 5000;
export const DEFAULT_RDZV_TIMEOUT_MS = 600_000;

export interface LaunchOptions {
  /** Workers started on this node (torchrun's --nproc-per-node). */
  nprocPerNode: number;
  /**
   * Nodes in the job; default 1. A range makes the job elastic (elastic.ts): the launchers
   * rendezvous through a store that node rank 0's launcher hosts at masterAddr:masterPort.
   */
  nnodes?: number | NodeRange;
  /**
   * This node's index in [0, nnodes); default 0. Elastic: only whether this launcher hosts the
   * launchers' store (0) or not; unset, it hosts the store when masterAddr:masterPort is free here.
   */
  nodeRank?: number;
  /** Elastic: after MIN nodes joined, ms a round still waits for more; default 5000. */
  rdzvWindowMs?: number;
  /** Elastic: ms a round waits for MIN nodes before the job fails; default 600000. */
  rdzvTimeoutMs?: number;
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
  /** Nodes of a fixed job; an elastic job's maximum. */
  nnodes: number;
  /** Elastic: undefined unless given (see LaunchOptions.nodeRank). */
  nodeRank: number | undefined;
  elastic: ElasticOptions | undefined;
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
  const range = typeof opts.nnodes === 'object' ? opts.nnodes : undefined;
  const nnodes = checkInt('nnodes', range ? range.max : ((opts.nnodes as number | undefined) ?? 1), 1, inf);
  const minNodes = range ? checkInt('nnodes MIN', range.min, 1, nnodes) : nnodes;
  const elastic = range && {
    minNodes,
    maxNodes: nnodes,
    windowMs: checkInt('rdzv-window (ms)', opts.rdzvWindowMs ?? DEFAULT_RDZV_WINDOW_MS, 0, inf),
    timeoutMs: checkInt('rdzv-timeout (ms)', opts.rdzvTimeoutMs ?? DEFAULT_RDZV_TIMEOUT_MS, 1, inf),
  };
  const givenRank = opts.nodeRank ?? (elastic ? undefined : 0);
  const nodeRank = givenRank === undefined ? undefined : checkInt('node-rank', givenRank, 0, nnodes - 1);
  const maxRestarts = checkInt('max-restarts', opts.maxRestarts ?? 0, 0, inf);
  const gracePeriodMs = checkInt('grace period (ms)', opts.gracePeriodMs ?? 5000, 0, inf);
  const masterPort = opts.masterPort === undefined ? undefined : checkInt('master-port', opts.masterPort, 1, 65535);
  // Several nodes must agree on where the store is: a default that differs per machine
  // (a free port, the loopback address) would split the job silently.
  // An elastic job of one node still has launchers that look for each other at a known place.
  if ((nnodes > 1 || elastic) && masterPort === undefined) {
    throw new ConfigError(`master-port is not set, expected a port (1-65535) shared by all ${nnodes} nodes`);
  }
  if ((nnodes > 1 || elastic) && !opts.masterAddr) {
    throw new ConfigError(`master-addr is not set, expected the address of node 0 reachable from all ${nnodes} nodes`);
  }
  if (!opts.script) throw new ConfigError('script is empty, expected a .ts, .js, .mjs or .cjs file');
  return {
    nprocPerNode,
    nnodes,
    nodeRank,
    elastic,
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
