// Starts one job of the training scaling worker (benchmarks/scaling-worker.ts by default) through
// launch() and returns rank 0's RESULT. Shared by benchmarks/scaling.ts and benchmarks/balance.ts.
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launch } from '../packages/comm/src/launch/index.ts';
import { Collect } from './collect.ts';
// Type only (erased): the worker module itself starts a process group when loaded.
import type { StepRecord } from './scaling-worker.ts';

const here = dirname(fileURLToPath(import.meta.url));

export interface ScalingResult {
  worldSize: number;
  backend: string;
  params: number;
  buckets: number;
  steps: StepRecord[];
}

export async function runScalingJob(opts: {
  nproc: number;
  /** The worker's JSON argument (scaling-worker.ts's Args). */
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
    script: opts.worker ?? resolve(here, 'scaling-worker.ts'),
    args: [JSON.stringify(opts.args)],
    stdout,
    stderr,
    nodeArgs: opts.nodeArgs ?? [],
    forwardSignals: true,
    env: { ZERORING_LOG_LEVEL: 'warn' },
  });
  if (result.exitCode !== 0) throw new Error(`${opts.label} failed (exit ${result.exitCode}):\n${stderr.text.slice(-4000)}`);
  const line = stdout.text.split('\n').find((l) => l.includes('RESULT '));
  if (!line) throw new Error(`${opts.label} printed no RESULT line:\n${stdout.text.slice(-2000)}`);
  return JSON.parse(line.slice(line.indexOf('RESULT ') + 7)) as ScalingResult;
}
