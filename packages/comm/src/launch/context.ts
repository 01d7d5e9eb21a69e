// What every launch shares, fixed or elastic: the worker command, the job token, where output
// and the launcher's own messages go, and the signals forwarded to whichever worker group runs
// now. Built once per launch() and disposed of at its end, so no listener outlives the job.
import { existsSync } from 'node:fs';
import { extname, resolve as resolvePath } from 'node:path';
import { constants as osConstants } from 'node:os';
import { logFormat } from '@zeroring/core';
import { ConfigError } from '../errors.ts';
import { jobToken, workerEnv } from './env.ts';
import type { LaunchOptions, ResolvedLaunchOptions } from './options.ts';
import type { GroupIo, WorkerExit, WorkerGroup, WorkerSpec } from './worker-group.ts';
import { describeExit } from './worker-group.ts';

export interface LaunchResult {
  /** What the launcher process should exit with: 0, the failed worker's status, or 128 + signal. */
  exitCode: number;
  outcome: 'succeeded' | 'failed' | 'stopped';
  /** Restarts performed (elastic: re-formations; 0 when the first attempt decided the outcome). */
  restarts: number;
  /** The worker whose failure ended the last attempt. */
  failure?: WorkerExit;
  /** The signal (forwarded to the workers) that stopped the job. */
  stoppedBy?: NodeJS.Signals;
}

/** Where this node's workers sit in one attempt's world. */
export interface Placement {
  /** Global rank of this node's local rank 0. */
  rankBase: number;
  worldSize: number;
  nodeRank: number;
  masterPort: number;
  restartCount: number;
}

const FORWARDED: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

export class LaunchContext {
  readonly command: string;
  readonly argv: string[];
  readonly token: string;
  readonly say: (m: string) => void;
  readonly io: GroupIo;
  /** Resolves with the first signal (or abort) that asks the job to stop. */
  readonly stopRequested: Promise<NodeJS.Signals>;
  stoppedBy: NodeJS.Signals | undefined;
  private group: WorkerGroup | undefined;
  private readonly workerLogFormat: 'pretty' | 'json';
  private readonly outputs: NodeJS.WritableStream[];
  private resolveStop!: (s: NodeJS.Signals) => void;

  constructor(
    readonly o: ResolvedLaunchOptions,
    private readonly opts: LaunchOptions,
  ) {
    const scriptPath = resolvePath(o.cwd, o.script);
    if (!existsSync(scriptPath)) throw new ConfigError(`script ${o.script} does not exist (looked at ${scriptPath})`);
    ({ command: this.command, argv: this.argv } = workerCommand(scriptPath, o.nodeArgs));
    this.token = jobToken(o.env.ZERORING_TOKEN ?? process.env.ZERORING_TOKEN, o.nnodes);
    const say = opts.onMessage ?? ((m: string) => process.stderr.write(`zeroring launch: ${m}\n`));
    this.say = say;
    this.io = {
      stdout: (opts.stdout ?? process.stdout) as NodeJS.WritableStream,
      stderr: (opts.stderr ?? process.stderr) as NodeJS.WritableStream,
      linePrefix: opts.linePrefix ?? ((rank: number) => `[rank ${rank}] `),
      gracePeriodMs: o.gracePeriodMs,
      onFailure: (f: WorkerExit) => say(`rank ${f.rank} failed with ${describeExit(f)}; stopping the other workers`),
    };
    this.stopRequested = new Promise((resolve) => (this.resolveStop = resolve));
    // A closed terminal or pipe (`zeroring launch ... | head`) must not kill the launcher and
    // orphan the workers: their output is dropped from then on, and the job runs to its end.
    this.outputs = [this.io.stdout, this.io.stderr];
    for (const s of this.outputs) s.on('error', ignoreWriteError);
    if (opts.forwardSignals ?? true) for (const s of FORWARDED) process.on(s, this.onSignal);
    opts.abortSignal?.addEventListener('abort', this.onAbort, { once: true });
    if (opts.abortSignal?.aborted) this.onAbort();
    // Workers log through a pipe to this process: they use the format this terminal would get.
    this.workerLogFormat = logFormat(process.env, (this.io.stderr as { isTTY?: boolean }).isTTY === true);
  }

  /** The group that signals go to from now on (undefined: none runs). */
  setGroup(group: WorkerGroup | undefined): void {
    this.group = group;
  }

  dispose(): void {
    for (const s of this.outputs) s.off('error', ignoreWriteError);
    for (const s of FORWARDED) process.off(s, this.onSignal);
    this.opts.abortSignal?.removeEventListener('abort', this.onAbort);
  }

  stopped(signal: NodeJS.Signals, restarts: number): LaunchResult {
    this.say(`stopped by ${signal}`);
    return { exitCode: 128 + (osConstants.signals[signal] ?? 15), outcome: 'stopped', restarts, stoppedBy: signal };
  }

  /** One spec per local rank, with torchrun's environment for this placement. */
  specs(p: Placement): WorkerSpec[] {
    const { o } = this;
    const out: WorkerSpec[] = [];
    for (let localRank = 0; localRank < o.nprocPerNode; localRank++) {
      const rank = p.rankBase + localRank;
      const env = workerEnv({
        base: { ZERORING_LOG_FORMAT: this.workerLogFormat, ...process.env, ...o.env },
        rank,
        localRank,
        worldSize: p.worldSize,
        localWorldSize: o.nprocPerNode,
        nodeRank: p.nodeRank,
        masterAddr: o.masterAddr,
        masterPort: p.masterPort,
        token: this.token,
        restartCount: p.restartCount,
        maxRestarts: o.maxRestarts,
      });
      out.push({ rank, localRank, command: this.command, argv: [...this.argv, ...o.args], env, cwd: o.cwd });
    }
    return out;
  }

  private readonly onSignal = (signal: NodeJS.Signals): void => {
    // A second signal means "now": skip the grace period.
    const again = this.stoppedBy !== undefined;
    this.stoppedBy ??= signal;
    this.resolveStop(this.stoppedBy);
    this.group?.stop(again ? 'SIGKILL' : signal);
  };

  private readonly onAbort = (): void => this.onSignal('SIGTERM');
}

function ignoreWriteError(): void {}

/** The command that runs a worker script: TypeScript through tsx, JavaScript as is. */
export function workerCommand(script: string, nodeArgs: readonly string[] = []): { command: string; argv: string[] } {
  const ext = extname(script);
  if (ext === '.ts' || ext === '.mts' || ext === '.cts') {
    return { command: process.execPath, argv: [...nodeArgs, '--import', tsxLoader(), script] };
  }
  if (ext === '.js' || ext === '.mjs' || ext === '.cjs') {
    return { command: process.execPath, argv: [...nodeArgs, script] };
  }
  throw new ConfigError(`script ${script} has extension '${ext}', expected .ts, .js, .mjs or .cjs`);
}

/** tsx's loader as an absolute URL, so workers find it whatever their working directory. */
function tsxLoader(): string {
  try {
    return import.meta.resolve('tsx');
  } catch {
    return 'tsx';
  }
}
