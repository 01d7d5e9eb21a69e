// Per-rank model-state memory of every strategy, measured, against the ZeRO paper's formulas
// (DESIGN.md): DDP 16Ψ, ZeRO-1 8Ψ + 8Ψ/N, ZeRO-2 4Ψ + 12Ψ/N, ZeRO-3 16Ψ/N bytes; and where the
// bytes live (device or host) with --offload.
//
//   node --import tsx benchmarks/zero/memory.ts [--model small] [--nprocs 2,4] [--steps 1] [--batch 1]
//        [--backend wasm] [--out benchmarks/results/memory-<model>-<machine>.json]
//
// "Measured" is what the trainer reports as summary.memory.modelStateBytes: the largest per-rank
// sum over params + grads + optimizer of each cell's peak during the run, as the strategies
// account their buffers with MemoryTracker (tensors on the device, typed arrays on the host).
// Gathered/in-flight buffers and activations are reported apart (they are not model state).
// Bytes do not depend on the machine's load, so one step per configuration is enough.
// Writes JSON, a Markdown table and one SVG chart (bytes per rank, measured vs formula) per N
// (-n<N>.svg), by default memory-small-2vcpu.* on a 2-CPU machine.
import { writeFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { benchArgs } from '../common/args.ts';
import { resultPath } from '../common/results.ts';
import { writeMemoryChart } from '../common/charts/index.ts';
import { estimateStrategy } from '@zeroring/train';
import { runZeroJob, mib, type ZeroBenchResult } from './launch.ts';
import type { ZeroBenchConfig } from './worker.ts';

const a = benchArgs(import.meta.url, {
  model: { type: 'string', default: 'small' },
  nprocs: { type: 'string', default: '2,4' },
  steps: { type: 'string', default: '1' },
  batch: { type: 'string', default: '1' },
  backend: { type: 'string', default: 'wasm' },
  out: { type: 'string' },
});
const outFile = a.out ?? resultPath(`memory-${a.model}`);

const CONFIGS: ZeroBenchConfig[] = [
  { strategy: 'ddp', offload: false },
  ...(['zero1', 'zero2', 'zero3'] as const).flatMap((strategy) => [
    { strategy, offload: false },
    { strategy, offload: true },
  ]),
];

/** The paper's per-rank model-state bytes (fp32 Adam), Ψ params, N ranks. */
function formula(strategy: string, psi: number, n: number): number {
  switch (strategy) {
    case 'ddp':
      return 16 * psi;
    case 'zero1':
      return 8 * psi + (8 * psi) / n;
    case 'zero2':
      return 4 * psi + (12 * psi) / n;
    default:
      return (16 * psi) / n;
  }
}

const sum = (p: { device: number; host: number }[], place: 'device' | 'host') => p.reduce((s, x) => s + x[place], 0);

interface Row {
  nproc: number;
  strategy: string;
  offload: boolean;
  params: number;
  shardLength?: number;
  measuredBytes: number;
  formulaBytes: number;
  ratio: number;
  /**
   * memory.ts estimateStrategy (with the partition's padded shard; with offload it adds the host
   * master params and gradient shard).
   */
  estimateDevice: number;
  estimateHost: number;
  ratioToEstimate: number;
  deviceModelState: number;
  hostModelState: number;
  deviceOptimizer: number;
  hostOptimizer: number;
  gatheredDevice: number;
  activationsDevice: number;
}

const rows: Row[] = [];
const started = new Date().toISOString();
for (const nproc of a.nprocs!.split(',').map(Number)) {
  const results: ZeroBenchResult[] = await runZeroJob({
    nproc,
    model: a.model as 'small',
    batch: Number(a.batch),
    steps: Number(a.steps),
    backend: a.backend!,
    configs: CONFIGS,
  });
  for (const r of results) {
    const ms = [r.peak.params, r.peak.grads, r.peak.optimizer];
    const f = formula(r.strategy, r.params, nproc);
    const est = estimateStrategy(r.strategy, r.offload, { params: r.params, nproc, shardParams: r.shardLength });
    rows.push({
      nproc,
      strategy: r.strategy,
      offload: r.offload,
      params: r.params,
      shardLength: r.shardLength,
      measuredBytes: r.modelStateBytes,
      formulaBytes: f,
      ratio: r.modelStateBytes / f,
      estimateDevice: est.device.total,
      estimateHost: est.host.total,
      ratioToEstimate: r.modelStateBytes / (est.device.total + est.host.total),
      deviceModelState: sum(ms, 'device'),
      hostModelState: sum(ms, 'host'),
      deviceOptimizer: r.peak.optimizer.device,
      hostOptimizer: r.peak.optimizer.host,
      gatheredDevice: r.peak.gathered.device,
      activationsDevice: r.peak.activations.device,
    });
  }
}

const label = (r: Row) => `${r.strategy}${r.offload ? '+offload' : ''}`;
const lines = [
  `Per-rank model-state bytes, GPT ${a.model} (Ψ = ${rows[0]?.params.toLocaleString('en-US')} ` +
    `params), ${a.backend} backend, measured by the strategies' MemoryTracker (${started})`,
  '',
  '| N | strategy | measured MiB | paper formula MiB | measured/formula ' +
    '| measured device / host MiB | estimate device / host MiB | ' +
    'measured/estimate | optimizer device / host MiB | gathered (device) MiB |',
  '| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ...rows.map(
    (r) =>
      `| ${r.nproc} | ${label(r)} | ${mib(r.measuredBytes)} | ${mib(r.formulaBytes)} | ` +
      `${r.ratio.toFixed(4)} | ${mib(r.deviceModelState)} / ${mib(r.hostModelState)} | ` +
      `${mib(r.estimateDevice)} / ${mib(r.estimateHost)} | ${r.ratioToEstimate.toFixed(4)} ` +
      `| ${mib(r.deviceOptimizer)} / ${mib(r.hostOptimizer)} | ${mib(r.gatheredDevice)} |`,
  ),
  '',
  'Paper formula (no offload): DDP 16Ψ, ZeRO-1 8Ψ+8Ψ/N, ZeRO-2 ' +
    '4Ψ+12Ψ/N, ZeRO-3 16Ψ/N. Estimate: memory.ts estimateStrategy with the',
  "partition's padded shard; with offload the host holds the shard's " +
    'Adam moments, fp32 master params and gradient shard (16 bytes per',
  'shard element), so the total exceeds the paper formula while the ' +
    'device loses the optimizer state. ZeRO-2/3 with offload reduce',
  'gradients straight into the host shard, so no device gradient ' +
    'shard exists (the estimate counts one: measured < estimate there).',
];
mkdirSync(dirname(outFile), { recursive: true });
writeFileSync(outFile, JSON.stringify({ model: a.model, backend: a.backend, date: started, rows }, null, 2) + '\n');
writeFileSync(outFile.replace(/\.json$/, '.md'), lines.join('\n') + '\n');
for (const nproc of new Set(rows.map((r) => r.nproc))) {
  const mine = rows.filter((r) => r.nproc === nproc);
  const results = mine.flatMap((r) => [
    { strategy: label(r), series: 'measured device', bytesPerRank: r.deviceModelState },
    { strategy: label(r), series: 'measured host', bytesPerRank: r.hostModelState },
    { strategy: label(r), series: 'formula (total)', bytesPerRank: r.formulaBytes },
  ]);
  await writeMemoryChart(
    { nproc, paramCount: mine[0].params, results },
    outFile.replace(/\.json$/, `-n${nproc}.svg`),
    `Model-state bytes per rank, GPT ${a.model}`,
  );
}
console.log(lines.join('\n'));
