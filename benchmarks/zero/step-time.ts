// ZeRO-3 step time against DDP's, side by side in the same processes: N ranks train the GPT with
// DDP and with ZeRO-3 alternately (ddp, zero3, ddp, zero3, ...: the machine's load drifts the
// same way for both), and the ratio of median step times is taken per round and over all.
// ZeRO-3 gathers every block twice per step (forward, backward) and prefetches the next block's
// gather while one computes; the gather statistics show how many acquires found it landed.
// A one-step DDP run first warms the backend up and is not counted.
//
//   node --import tsx benchmarks/zero/step-time.ts [--model small] [--nproc 2] [--rounds 2]
//        [--steps 4] [--warmup 1] [--batch 1] [--backend wasm] [--offload]
//        [--out benchmarks/results/zero-step-time-<model>-<machine>.json]
//
// Writes JSON and a Markdown table beside it.
import { writeFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { benchArgs } from '../common/args.ts';
import { resultPath } from '../common/results.ts';
import os from 'node:os';
import { median, runZeroJob, type ZeroBenchResult } from './launch.ts';
import type { ZeroBenchConfig } from './worker.ts';

const a = benchArgs(import.meta.url, {
  model: { type: 'string', default: 'small' },
  nproc: { type: 'string', default: '2' },
  rounds: { type: 'string', default: '2' },
  steps: { type: 'string', default: '4' },
  warmup: { type: 'string', default: '1' },
  batch: { type: 'string', default: '1' },
  backend: { type: 'string', default: 'wasm' },
  offload: { type: 'boolean', default: false },
  out: { type: 'string' },
});
const outFile = a.out ?? resultPath(`zero-step-time-${a.model}`);
const rounds = Number(a.rounds);
const warmup = Number(a.warmup);
// A short DDP run first warms the backend (kernel compilation, allocator pools) for both.
const configs: ZeroBenchConfig[] = [{ strategy: 'ddp', offload: false, runSteps: 1 }];
for (let r = 0; r < rounds; r++)
  configs.push({ strategy: 'ddp', offload: false }, { strategy: 'zero3', offload: a.offload! });

const load0 = os.loadavg()[0];
const results = (
  await runZeroJob({
    nproc: Number(a.nproc),
    model: a.model as 'small',
    batch: Number(a.batch),
    steps: Number(a.steps),
    backend: a.backend!,
    configs,
  })
).slice(1);
const load1 = os.loadavg()[0];
const timed = (i: number) => results[i].steps.slice(warmup);
const perRound = Array.from({ length: rounds }, (_, r) => {
  const ddp = median(timed(2 * r).map((s) => s.stepMs));
  const z3 = median(timed(2 * r + 1).map((s) => s.stepMs));
  const ddpCpu = median(timed(2 * r).map((s) => s.cpuMs));
  const z3Cpu = median(timed(2 * r + 1).map((s) => s.cpuMs));
  return {
    round: r,
    ddpStepMs: ddp,
    zero3StepMs: z3,
    ratio: z3 / ddp,
    ddpCpuMs: ddpCpu,
    zero3CpuMs: z3Cpu,
    cpuRatio: z3Cpu / ddpCpu,
    zero3Gather: results[2 * r + 1].gather,
  };
});
const all = (k: number, f: (s: ZeroBenchResult['steps'][number]) => number) =>
  results.filter((_, i) => i % 2 === k).flatMap((_, j) => timed(2 * j + k).map(f));
const ddpMedian = median(all(0, (s) => s.stepMs));
const z3Median = median(all(1, (s) => s.stepMs));
const ddpCpu = median(all(0, (s) => s.cpuMs));
const z3Cpu = median(all(1, (s) => s.cpuMs));
const z3Steps = results.filter((_, i) => i % 2 === 1).flatMap((r) => r.steps.slice(warmup));
const summary = {
  model: a.model,
  nproc: Number(a.nproc),
  backend: a.backend,
  batch: Number(a.batch),
  offload: a.offload,
  stepsPerRun: Number(a.steps),
  warmupDropped: warmup,
  loadAvg: [load0, load1],
  ddpMedianStepMs: ddpMedian,
  zero3MedianStepMs: z3Median,
  ratio: z3Median / ddpMedian,
  medianRoundRatio: median(perRound.map((r) => r.ratio)),
  ddpMedianCpuMs: ddpCpu,
  zero3MedianCpuMs: z3Cpu,
  cpuRatio: z3Cpu / ddpCpu,
  zero3: {
    computeMs: median(z3Steps.map((s) => s.computeMs)),
    commMs: median(z3Steps.map((s) => s.commMs)),
    optimMs: median(z3Steps.map((s) => s.optimMs)),
  },
  rounds: perRound,
  date: new Date().toISOString(),
};
mkdirSync(dirname(outFile), { recursive: true });
writeFileSync(outFile, JSON.stringify(summary, null, 2) + '\n');
const md = [
  `ZeRO-3${a.offload ? ' (offload)' : ''} vs DDP step time, GPT ${a.model}, ` +
    `N=${a.nproc}, batch ${a.batch}/rank, ${a.backend}, load ` +
    `${load0.toFixed(1)}→${load1.toFixed(1)} (median step ms after ${warmup} warm-up step(s))`,
  '',
  '| round | DDP ms | ZeRO-3 ms | ZeRO-3 / DDP (wall) | DDP cpu-ms | ZeRO-3 ' +
    'cpu-ms | ZeRO-3 / DDP (cpu) | gathers | acquires | prefetch landed |',
  '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ...perRound.map(
    (r) =>
      `| ${r.round} | ${r.ddpStepMs.toFixed(0)} | ${r.zero3StepMs.toFixed(0)} | ${r.ratio.toFixed(3)} ` +
      `| ${r.ddpCpuMs.toFixed(0)} | ${r.zero3CpuMs.toFixed(0)} | ${r.cpuRatio.toFixed(3)} | ` +
      `${r.zero3Gather?.gathers} | ${r.zero3Gather?.acquires} | ${r.zero3Gather?.prefetchHits} |`,
  ),
  `| all | ${ddpMedian.toFixed(0)} | ${z3Median.toFixed(0)} | ${(z3Median / ddpMedian).toFixed(3)} ` +
    `| ${ddpCpu.toFixed(0)} | ${z3Cpu.toFixed(0)} | ${(z3Cpu / ddpCpu).toFixed(3)} | | | |`,
  '',
  'Wall: median step time (the target, ZeRO-3 <= 1.5x DDP). cpu: ' +
    'rank 0 process CPU time per step, which contention on a shared',
  'machine inflates far less than wall time.',
];
writeFileSync(outFile.replace(/\.json$/, '.md'), md.join('\n') + '\n');
console.log(md.join('\n'));
