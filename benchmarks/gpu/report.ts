// The Markdown table beside gpu-<machine>.json: the adapter, one row per training run (tokens/s,
// MFU, the GPU work per step) and one per matmul shape (tfjs vs our two programs), from the
// same report object the JSON holds.
import type { MatmulRow } from './matmul.ts';
import type { RunResult } from './runs.ts';

export interface ReportLike {
  date: string;
  machine: { name: string; node: string; tfjs: string };
  adapter: { description: string; vendor: string; device: string; software: boolean; shaderF16: boolean };
  peak: { fp32Tflops: number; source: string } | 'unknown';
  mfuFormula: string;
  options: { warmup: number };
  runs: Array<
    RunResult & { params: number; flopsPerToken: number; achievedTflops?: number; mfu?: number; ofOneProcess?: number }
  >;
  matmul: MatmulRow[];
  skipped: Array<{ what: string; reason: string }>;
  wallSeconds: number;
}

const n0 = (x: number | undefined) => (x === undefined ? '-' : Math.round(x).toLocaleString('en-US'));
const n1 = (x: number | undefined) => (x === undefined ? '-' : x.toFixed(1));
const mb = (x: number | undefined) => (x === undefined ? '-' : `${(x / 2 ** 20).toFixed(0)} MiB`);
const row = (cells: string[]) => `| ${cells.join(' | ')} |`;

function runsTable(r: ReportLike): string[] {
  const head = [
    'model',
    'params',
    'procs',
    'batch/rank',
    'tokens/s',
    'x of 1 proc',
    'step ms',
    'TFLOP/s',
    'MFU',
    'dispatches',
    'submits',
    'read-backs',
    'read-back bytes',
    'wait ms',
    'enqueue ms',
    'activations',
  ];
  return [
    row(head),
    row(head.map(() => '---')),
    ...r.runs.map((x) => {
      const g = x.gpuPerStep;
      return row([
        x.model,
        `${(x.params / 1e6).toFixed(1)} M`,
        String(x.nproc),
        String(x.batchPerRank ?? '-'),
        x.tokensPerSec === undefined ? `failed: ${x.error ?? '?'}` : n0(x.tokensPerSec) + (x.timedOut ? ' (cut)' : ''),
        x.ofOneProcess === undefined ? '-' : `${x.ofOneProcess.toFixed(2)}x`,
        n1(x.stepMs),
        x.achievedTflops === undefined ? '-' : x.achievedTflops.toFixed(3),
        x.mfu === undefined ? '-' : `${(100 * x.mfu).toFixed(2)}%`,
        n0(g?.dispatches),
        n0(g?.submissions),
        n0(g?.readbacks),
        n0(g?.readbackBytes),
        n1(g?.waitMs),
        n1(g?.enqueueMs),
        mb(x.activationBytes),
      ]);
    }),
  ];
}

function matmulTable(r: ReportLike): string[] {
  const head = [
    'model',
    'matmul',
    'M x K x N',
    'tfjs GFLOP/s',
    'tiled GFLOP/s',
    'register GFLOP/s',
    'fastest',
    'tiled speed-up',
    'register speed-up',
    'rel diff',
  ];
  return [
    row(head),
    row(head.map(() => '---')),
    ...r.matmul.map((m) =>
      row([
        m.model,
        m.name,
        `${m.m} x ${m.k} x ${m.n}${m.transposeA ? ' (Aᵀ)' : ''}${m.transposeB ? ' (Bᵀ)' : ''}`,
        n1(m.tfjs.gflops),
        n1(m.tiled.gflops),
        n1(m.register.gflops),
        m.faster,
        `${m.tiledSpeedup.toFixed(2)}x`,
        `${m.registerSpeedup.toFixed(2)}x`,
        m.relDiff.toExponential(1),
      ]),
    ),
  ];
}

export function markdown(r: ReportLike): string {
  const a = r.adapter;
  const peak = r.peak === 'unknown' ? 'unknown, so no MFU' : `${r.peak.fp32Tflops} TFLOP/s fp32 (${r.peak.source})`;
  const wins = (impl: string) => r.matmul.filter((m) => m.faster === impl).length;
  return [
    `# GPU benchmark: ${r.machine.name}`,
    '',
    `${r.date}, Node ${r.machine.node}, tfjs ${r.machine.tfjs}, ${r.wallSeconds.toFixed(0)} s in all.`,
    `Adapter: ${a.description} (vendor ${a.vendor}, device ${a.device}${a.software ? ', software' : ''}), ` +
      `shader-f16 ${a.shaderF16 ? 'available' : 'not available'}. Peak: ${peak}.`,
    '',
    `## Training: \`zeroring train --backend webgpu --gpu-counts\``,
    '',
    `Medians over the steps after the first ${r.options.warmup}; tokens/s of all processes; GPU work is rank 0's ` +
      `per step. ${r.mfuFormula}.`,
    '',
    ...runsTable(r),
    '',
    `## Matmul: tf.matMul against the tiled and the register-tile WGSL programs`,
    '',
    `Fastest of ${r.matmul.length} shapes: tfjs on ${wins('tfjs')}, the tiled program on ${wins('tiled')}, ` +
      `the register tile on ${wins('register')}.`,
    '',
    ...matmulTable(r),
    '',
    ...(r.skipped.length ? ['Skipped:', '', ...r.skipped.map((s) => `- ${s.what}: ${s.reason}`), ''] : []),
  ].join('\n');
}
