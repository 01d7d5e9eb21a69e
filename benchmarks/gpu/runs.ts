// One training run of the GPU benchmark: `zeroring train --backend webgpu --gpu-counts` spawned
// as a user runs it (the built CLI, its launcher and workers for --nproc 2), then its
// metrics.jsonl read back and reduced to medians over the steps after the warm-up (the first
// step compiles every shader). The child runs in its own process group with a deadline, and the
// whole group is killed when the deadline passes, so a stuck GPU or worker never hangs the
// benchmark; the steps it finished by then still count, flagged `timedOut`.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { GpuWorkCounts } from '@zeroring/backend';

export interface RunSpec {
  model: string;
  nproc: number;
  steps: number;
  /** Steps left out of the medians at the start (shader compilation, first allocations). */
  warmup: number;
  /** Windows per rank per step; the preset's default when undefined. */
  batchSize?: number;
  /** A text file to train on instead of Moby Dick. */
  data?: string;
  /** The zeroring command's script (packages/cli/bin/zeroring.js, or a bundle of it). */
  cli: string;
  timeoutMs: number;
}

/** Medians per step of rank 0's WebGPU work (metrics.jsonl's `gpu` field). */
export type GpuCounts = GpuWorkCounts & { enqueueMs: number };

export interface RunResult {
  model: string;
  nproc: number;
  batchPerRank?: number;
  stepsRun: number;
  stepsMeasured: number;
  /** Median over the measured steps, all ranks together. */
  tokensPerSec?: number;
  stepMs?: number;
  computeMs?: number;
  commMs?: number;
  optimMs?: number;
  gpuPerStep?: GpuCounts;
  /** Bytes rank 0's tape kept for backward in the last step (memory.activations.device). */
  activationBytes?: number;
  wallSeconds: number;
  timedOut: boolean;
  /** Why the run failed: the exit status and the end of its log. */
  error?: string;
}

interface MetricsLine {
  step: number;
  tokensPerSec: number;
  stepMs: number;
  computeMs: number;
  commMs: number;
  optimMs: number;
  memory?: { activations?: { device?: number } };
  gpu?: GpuCounts;
}

/** After the deadline's SIGTERM: longer than the launcher's own 5 s grace for its workers. */
const KILL_GRACE_MS = 8000;

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/** The complete lines of a metrics.jsonl (a killed run may leave half a line at the end). */
function readMetrics(file: string): MetricsLine[] {
  if (!existsSync(file)) return [];
  const lines: MetricsLine[] = [];
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    try {
      if (line.trim()) lines.push(JSON.parse(line) as MetricsLine);
    } catch {
      // the line the deadline cut short
    }
  }
  return lines;
}

/** Runs the CLI until it exits or the deadline; resolves with its exit status and log tail. */
function runCli(args: string[], cli: string, timeoutMs: number) {
  return new Promise<{ code: number | null; timedOut: boolean; tail: string }>((resolve) => {
    const env = { ...process.env, ZERORING_LOG_FORMAT: 'json' };
    // Its own process group: on the deadline the launcher and its workers go with it.
    const child = spawn(process.execPath, [cli, ...args], { env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let tail = '';
    const keep = (d: Buffer) => (tail = (tail + d.toString()).slice(-4000));
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    let timedOut = false;
    const signal = (sig: NodeJS.Signals) => {
      try {
        process.kill(-child.pid!, sig);
      } catch {
        // already gone
      }
    };
    // SIGTERM first: the launcher forwards it to its workers, which lead process groups of their
    // own, and kills them after its grace period; SIGKILL for whatever is left after ours.
    let killTimer: NodeJS.Timeout | undefined;
    const timer = setTimeout(() => {
      timedOut = true;
      signal('SIGTERM');
      killTimer = setTimeout(() => signal('SIGKILL'), KILL_GRACE_MS);
    }, timeoutMs);
    child.once('close', (code) => {
      clearTimeout(timer);
      clearTimeout(killTimer);
      resolve({ code, timedOut, tail });
    });
  });
}

/** One `zeroring train` run of `spec`, reduced to its medians. */
export async function trainRun(spec: RunSpec): Promise<RunResult> {
  const dir = mkdtempSync(join(tmpdir(), `zr-gpu-${spec.model}-${spec.nproc}-`));
  const args = [
    'train',
    '--backend',
    'webgpu',
    '--model',
    spec.model,
    '--nproc',
    String(spec.nproc),
    '--steps',
    String(spec.steps),
    '--gpu-counts',
    '--out',
    dir,
    '--sample-tokens',
    '0',
    // Validation only before the first step and after the last, on one batch: not measured.
    '--eval-interval',
    String(spec.steps + 1),
    '--eval-batches',
    '1',
    ...(spec.batchSize !== undefined ? ['--batch-size', String(spec.batchSize)] : []),
    ...(spec.data !== undefined ? ['--data', spec.data] : []),
  ];
  const t0 = performance.now();
  try {
    const { code, timedOut, tail } = await runCli(args, spec.cli, spec.timeoutMs);
    const wallSeconds = (performance.now() - t0) / 1000;
    const lines = readMetrics(join(dir, 'metrics.jsonl'));
    const measured = lines.filter((l) => l.step > spec.warmup);
    const summary = existsSync(join(dir, 'summary.json'))
      ? (JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8')) as { config?: { batchSize?: number } })
      : undefined;
    const result: RunResult = {
      model: spec.model,
      nproc: spec.nproc,
      batchPerRank: summary?.config?.batchSize ?? spec.batchSize,
      stepsRun: lines.length,
      stepsMeasured: measured.length,
      wallSeconds,
      timedOut,
    };
    if (code !== 0 && !timedOut) result.error = `exit ${code}: ${tail.trim().split('\n').slice(-3).join(' | ')}`;
    if (timedOut && measured.length === 0) result.error = `no step after the warm-up within ${spec.timeoutMs / 1000} s`;
    if (measured.length === 0) return result;
    const med = (f: (l: MetricsLine) => number) => median(measured.map(f));
    Object.assign(result, {
      tokensPerSec: med((l) => l.tokensPerSec),
      stepMs: med((l) => l.stepMs),
      computeMs: med((l) => l.computeMs),
      commMs: med((l) => l.commMs),
      optimMs: med((l) => l.optimMs),
      activationBytes: measured.at(-1)!.memory?.activations?.device,
    });
    if (measured.every((l) => l.gpu)) {
      const g = (k: keyof GpuCounts) => med((l) => l.gpu![k]);
      result.gpuPerStep = {
        dispatches: g('dispatches'),
        submissions: g('submissions'),
        readbacks: g('readbacks'),
        readbackBytes: g('readbackBytes'),
        waitMs: g('waitMs'),
        enqueueMs: g('enqueueMs'),
      };
    }
    return result;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
