// Starts one job of the training scaling worker (worker.ts beside this file by default) through
// launch() and returns rank 0's RESULT. Shared by main.ts and balance.ts in this folder.
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launch } from '@zeroring/comm';
import { Collect } from '../common/collect.ts';
// Type only (erased): the worker module itself starts a process group when loaded.
import type { StepRecord } from './worker.ts';

const here = dirname(fileURLToPath(import.meta.url));

/**
 * Steps dropped before taking medians when none is given: a third of the steps (tiny's 60 drop
 * 20), at least 2 and leaving at least 2. By then most of V8's optimising of tfjs's JavaScript is
 * done (--trace-opt: 20-30 compilations per 10 steps at first, ~2 after ~70 steps) and --balance
 * has had time to settle on a split (it moves after 3 fresh observations); runs of 16 steps with
 * 4 dropped, an earlier default, ended about when --balance first moved. Both main.ts and
 * vs-torch.ts (for torch too) use it, so they measure the same steps.
 */
export const defaultWarmup = (steps: number): number => Math.min(steps - 2, Math.max(2, Math.floor(steps / 3)));

export interface ScalingResult {
  worldSize: number;
  backend: string;
  params: number;
  buckets: number;
  steps: StepRecord[];
}

export async function runScalingJob(opts: {
  nproc: number;
  /** The worker's JSON argument (worker.ts's Args). */
  args: Record<string, unknown>;
  /** Names the job in errors, e.g. "tiny with 2 rank(s)". */
  label: string;
  worker?: string;
  nodeArgs?: string[];
}): Promise<ScalingResult> {
  const stdout = new Collect();
  const stderr = new Collect();
  const result = await launch({
    nprocPerNode: opts.nproc,
    script: opts.worker ?? resolve(here, 'worker.ts'),
    args: [JSON.stringify(opts.args)],
    stdout,
    stderr,
    nodeArgs: opts.nodeArgs ?? [],
    forwardSignals: true,
    env: { ZERORING_LOG_LEVEL: 'warn' },
  });
  if (result.exitCode !== 0)
    throw new Error(`${opts.label} failed (exit ${result.exitCode}):\n${stderr.text.slice(-4000)}`);
  const line = stdout.text.split('\n').find((l) => l.includes('RESULT '));
  if (!line) throw new Error(`${opts.label} printed no RESULT line:\n${stdout.text.slice(-2000)}`);
  return JSON.parse(line.slice(line.indexOf('RESULT ') + 7)) as ScalingResult;
}
