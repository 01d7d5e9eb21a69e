// launch(): the library behind `zeroring launch` (and `zeroring train --nproc`). It starts the
// local worker group with torchrun's environment, and like torchrun's elastic agent restarts
// the whole group after a failure up to maxRestarts times (ZERORING_RESTART_COUNT tells the
// workers which attempt they are, so a trainer resumes from its latest checkpoint). Signals
// sent to the launcher are forwarded; a failure stops the other workers; nothing is left behind.
import { existsSync } from 'node:fs';
import { extname, resolve as resolvePath } from 'node:path';
import { constants as osConstants } from 'node:os';
import { ConfigError } from '../errors.ts';
import { assertStorePortFree, freePort, jobToken, workerEnv } from './env.ts';
import { logFormat } from '@zeroring/core';
import { resolveLaunchOptions, type LaunchOptions, type ResolvedLaunchOptions } from './options.ts';
import { describeExit, statusCode, WorkerGroup, type WorkerExit, type WorkerSpec } from './worker-group.ts';

export interface LaunchResult {
  /** What the launcher process should exit with: 0, the failed worker's status, or 128 + signal. */
  exitCode: number;
  outcome: 'succeeded' | 'failed' | 'stopped';
  /** Restarts performed (0 when the first attempt decided the outcome). */
  restarts: number;
  /** The worker whose failure ended the last attempt. */
  failure?: WorkerExit;
  /** The signal (forwarded to the workers) that stopped the job. */
  stoppedBy?: NodeJS.Signals;
}

const FORWARDED: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

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

export async function launch(opts: LaunchOptions): Promise<LaunchResult> {
  const o = resolveLaunchOptions(opts);
  const scriptPath = resolvePath(o.cwd, o.script);
  if (!existsSync(scriptPath)) throw new ConfigError(`script ${o.script} does not exist (looked at ${scriptPath})`);
  const { command, argv } = workerCommand(scriptPath, o.nodeArgs);
  const token = jobToken(o.env.ZERORING_TOKEN ?? process.env.ZERORING_TOKEN, o.nnodes);
  const say = opts.onMessage ?? ((m: string) => process.stderr.write(`zeroring launch: ${m}\n`));
  const io = {
    stdout: (opts.stdout ?? process.stdout) as NodeJS.WritableStream,
    stderr: (opts.stderr ?? process.stderr) as NodeJS.WritableStream,
    linePrefix: opts.linePrefix ?? ((rank: number) => `[rank ${rank}] `),
    gracePeriodMs: o.gracePeriodMs,
    onFailure: (f: WorkerExit) => say(`rank ${f.rank} failed with ${describeExit(f)}; stopping the other workers`),
  };

  // A closed terminal or pipe (`zeroring launch ... | head`) must not kill the launcher and
  // orphan the workers: their output is dropped from then on, and the job runs to its end.
  const ignoreWriteError = (): void => {};
  const outputs: NodeJS.WritableStream[] = [io.stdout, io.stderr];
  for (const s of outputs) s.on('error', ignoreWriteError);

  let group: WorkerGroup | undefined;
  let stoppedBy: NodeJS.Signals | undefined;
  const stopAll = (signal: NodeJS.Signals): void => {
    // A second signal means "now": skip the grace period.
    const again = stoppedBy !== undefined;
    stoppedBy ??= signal;
    group?.stop(again ? 'SIGKILL' : signal);
  };
  const onSignal = (signal: NodeJS.Signals): void => stopAll(signal);
  const onAbort = (): void => stopAll('SIGTERM');
  if (opts.forwardSignals ?? true) for (const s of FORWARDED) process.on(s, onSignal);
  opts.abortSignal?.addEventListener('abort', onAbort, { once: true });
  if (opts.abortSignal?.aborted) onAbort();

  // Workers log through a pipe to this process: they use the format this terminal would get.
  const workerLogFormat = logFormat(process.env, (io.stderr as { isTTY?: boolean }).isTTY === true);
  try {
    if (o.nodeRank === 0 && o.masterPort !== undefined) await assertStorePortFree(o.masterAddr, o.masterPort);
    for (let attempt = 0; ; attempt++) {
      if (stoppedBy) return stopped(stoppedBy, attempt);
      const masterPort = o.masterPort ?? (await freePort(o.masterAddr));
      if (stoppedBy) return stopped(stoppedBy, attempt); // a signal came while we picked the port
      group = new WorkerGroup(specs(o, { command, argv, token, masterPort, attempt, workerLogFormat }), io);
      const result = await group.done;
      group = undefined;
      if (result.outcome === 'succeeded') return { exitCode: 0, outcome: 'succeeded', restarts: attempt };
      if (result.outcome === 'stopped' || stoppedBy) return stopped(stoppedBy ?? 'SIGTERM', attempt);
      const failure = result.failure!;
      if (attempt < o.maxRestarts) {
        say(
          `restarting the local group (restart ${attempt + 1} of ${o.maxRestarts}) ` +
            `after rank ${failure.rank} failed with ${describeExit(failure)}`,
        );
        continue;
      }
      const left = o.maxRestarts > 0 ? ` after ${attempt} restart${attempt === 1 ? '' : 's'}` : '';
      say(
        `job failed${left}: rank ${failure.rank} (local rank ` +
          `${failure.localRank}) exited with ${describeExit(failure)}`,
      );
      return { exitCode: statusCode(failure) || 1, outcome: 'failed', restarts: attempt, failure };
    }
  } finally {
    for (const s of outputs) s.off('error', ignoreWriteError);
    for (const s of FORWARDED) process.off(s, onSignal);
    opts.abortSignal?.removeEventListener('abort', onAbort);
  }

  function stopped(signal: NodeJS.Signals, restarts: number): LaunchResult {
    say(`stopped by ${signal}`);
    return { exitCode: 128 + (osConstants.signals[signal] ?? 15), outcome: 'stopped', restarts, stoppedBy: signal };
  }
}

function specs(
  o: ResolvedLaunchOptions,
  a: {
    command: string;
    argv: readonly string[];
    token: string;
    masterPort: number;
    attempt: number;
    workerLogFormat: 'pretty' | 'json';
  },
): WorkerSpec[] {
  const out: WorkerSpec[] = [];
  for (let localRank = 0; localRank < o.nprocPerNode; localRank++) {
    const rank = o.nodeRank * o.nprocPerNode + localRank;
    const env = workerEnv({
      base: { ZERORING_LOG_FORMAT: a.workerLogFormat, ...process.env, ...o.env },
      rank,
      localRank,
      worldSize: o.worldSize,
      localWorldSize: o.nprocPerNode,
      nodeRank: o.nodeRank,
      masterAddr: o.masterAddr,
      masterPort: a.masterPort,
      token: a.token,
      restartCount: a.attempt,
      maxRestarts: o.maxRestarts,
    });
    out.push({ rank, localRank, command: a.command, argv: [...a.argv, ...o.args], env, cwd: o.cwd });
  }
  return out;
}
