// Starts one job of worker.ts (beside this file) through launch() and returns rank 0's RESULT lines
// (one per configuration). Shared by memory.ts and step-time.ts.
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launch } from '@zeroring/comm';
import { Collect } from '../common/collect.ts';
import type { ZeroBenchConfig } from './worker.ts';

const here = dirname(fileURLToPath(import.meta.url));

export interface ZeroBenchResult extends ZeroBenchConfig {
  worldSize: number;
  backend: string;
  params: number;
  shardLength?: number;
  modelStateBytes: number;
  peak: Record<'params' | 'grads' | 'optimizer' | 'gathered' | 'activations', { device: number; host: number }>;
  gather?: { gathers: number; acquires: number; prefetchHits: number };
  steps: Array<{ stepMs: number; computeMs: number; commMs: number; optimMs: number; cpuMs: number }>;
}

export async function runZeroJob(opts: {
  nproc: number;
  model: 'tiny' | 'small';
  batch: number;
  steps: number;
  backend: string;
  configs: ZeroBenchConfig[];
}): Promise<ZeroBenchResult[]> {
  const stdout = new Collect();
  const stderr = new Collect();
  const { nproc, ...job } = opts;
  const result = await launch({
    nprocPerNode: nproc,
    script: resolve(here, 'worker.ts'),
    args: [JSON.stringify({ ...job, seed: 1 })],
    stdout,
    stderr,
    forwardSignals: false,
  });
  if (result.exitCode !== 0)
    throw new Error(
      `the ZeRO benchmark worker with ${nproc} ranks exited ${result.exitCode}:\n${stderr.text.slice(-3000)}`,
    );
  return stdout.text
    .split('\n')
    .filter((l) => l.includes('RESULT '))
    .map((l) => JSON.parse(l.slice(l.indexOf('RESULT ') + 7)) as ZeroBenchResult);
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length === 0 ? NaN : s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export const mib = (b: number): string => (b / 1048576).toFixed(2);
