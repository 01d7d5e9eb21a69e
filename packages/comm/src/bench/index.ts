// The collectives benchmark that `zeroring bench collectives` runs: the launcher starts the worker
// script (collectives-worker.ts) on every rank with a BenchConfig as its argument; the reference
// data, the size sweep and the raw-TCP ceiling live beside it.
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';

export type { BenchConfig, Row as BenchRow } from './collectives-worker.ts';
export { BENCH_OPS, busFactor, countWrong, makeCase, value, type BenchOp, type Case } from './pattern.ts';
export { formatBytes, parseBytes, SizeError, sweep } from './sizes.ts';

/** The worker script's path: its TypeScript source in development, its built JavaScript in a package. */
export function collectivesBenchWorker(): string {
  const ext = extname(fileURLToPath(import.meta.url));
  return fileURLToPath(new URL(`./collectives-worker${ext}`, import.meta.url));
}
