// Host AdamW throughput: the plain JS loop vs the WASM SIMD kernel on one thread vs the kernel
// split across worker threads, side by side in one run (the machine is shared and noisy, so the
// variants alternate within each repetition and we quote medians and ratios).
//
//   node --import tsx benchmarks/optimizer/main.ts [--sizes 1M,10M,100M] [--threads 2,4] [--reps R] [--out FILE]
//
// --threads lists the thread counts of the threaded variant (default: all cores).
//
// Reference: torch 1.13's CPU AdamW updates ~160 M params/s on one thread; the goal is at least
// twice that per thread. Writes benchmarks/results/optimizer-<machine>.json (e.g. -2vcpu) and a
// Markdown table beside it, and prints the table.
import os from 'node:os';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { benchArgs } from '../common/args.ts';
import { resultPath } from '../common/results.ts';
import { HostAdamW, adamwStepPlain, decayRuns, type AdamWHyper } from '@zeroring/train';

const TORCH_PER_THREAD = 160e6;

const args = benchArgs(import.meta.url, {
  sizes: { type: 'string', default: '1M,10M,100M' },
  threads: { type: 'string' },
  reps: { type: 'string' },
  out: { type: 'string', default: resultPath('optimizer') },
});

const parseSize = (s: string): number => {
  const m = /^(\d+(?:\.\d+)?)([kmb]?)$/i.exec(s.trim());
  if (!m) throw new Error(`--sizes: ${JSON.stringify(s)} is not a size like 1M, 10M, 100M`);
  return Math.round(Number(m[1]) * ({ '': 1, k: 1e3, m: 1e6, b: 1e9 } as Record<string, number>)[m[2]!.toLowerCase()]!);
};
const sizes = args.sizes!.split(',').map(parseSize);
const cores = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
const threadCounts = (args.threads ?? String(cores)).split(',').map((t) => {
  const n = Number(t);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--threads: ${JSON.stringify(t)} is not a thread count >= 1`);
  return n;
});
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

// Each variant gets wall time and process CPU time (all threads). On a shared, oversubscribed
// machine wall time mostly measures the scheduler; params per CPU-second is the per-thread rate
// while the thread actually runs, which is what "M params/s per thread" compares.
interface Timing {
  ms: number;
  cpuMs: number;
  paramsPerSec: number;
  paramsPerCpuSec: number;
}
interface Result {
  size: number;
  reps: number;
  plain: Timing;
  wasm1: Timing;
  threaded: Array<Timing & { threads: number }>;
}

async function timed(fn: () => unknown): Promise<[number, number]> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await fn();
  const wall = performance.now() - t0;
  const c = process.cpuUsage(c0);
  return [wall, (c.user + c.system) / 1e3];
}
const timing = (size: number, wall: number[], cpu: number[]): Timing => {
  const ms = median(wall);
  const cpuMs = median(cpu);
  return { ms, cpuMs, paramsPerSec: size / (ms / 1e3), paramsPerCpuSec: size / (cpuMs / 1e3) };
};

const hyper: AdamWHyper = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1 };
const results: Result[] = [];

for (const size of sizes) {
  const reps = args.reps ? Number(args.reps) : size <= 2e6 ? 30 : size <= 2e7 ? 9 : 5;
  // Decay the first 90% (matrices) and not the rest (biases, norms): realistic runs, not one.
  const decay: [number, number][] = [[0, Math.floor(size * 0.9)]];
  const one = await HostAdamW.create({ length: size, threads: 1, decay });
  const many: HostAdamW[] = [];
  for (const threads of threadCounts) many.push(await HostAdamW.create({ length: size, threads, decay }));
  const plain = {
    p: new Float32Array(size),
    g: new Float32Array(size),
    m: new Float32Array(size),
    v: new Float32Array(size),
  };
  for (let i = 0; i < size; i++) {
    const p = Math.sin(i) * 0.02;
    const g = Math.cos(i * 0.37) * 1e-3;
    plain.p[i] = one.params[i] = p;
    plain.g[i] = one.grads[i] = g;
  }
  for (const o of many) {
    o.params.set(one.params);
    o.grads.set(one.grads);
  }
  const runs = decayRuns(size, decay);
  const series = () => ({ wall: [] as number[], cpu: [] as number[] });
  const times = { plain: series(), one: series(), many: many.map(series) };
  const record = (into: { wall: number[]; cpu: number[] }, [wall, cpu]: [number, number], rep: number): void => {
    if (rep === 0) return; // warm-up: JIT, first-touch page faults
    into.wall.push(wall);
    into.cpu.push(cpu);
  };
  // Alternate the variants within each repetition so load changes hit them alike.
  for (let rep = 0; rep <= reps; rep++) {
    const t = rep + 1;
    record(times.plain, await timed(() => adamwStepPlain(plain.p, plain.g, plain.m, plain.v, hyper, t, runs)), rep);
    record(times.one, await timed(() => one.step(hyper, t)), rep);
    for (const [k, o] of many.entries()) record(times.many[k]!, await timed(() => o.step(hyper, t)), rep);
  }
  // The variants must have computed the same thing (kernel vs kernel: bit-identical; vs the plain
  // loop within f32 rounding compounded over the steps).
  for (let i = 0; i < size; i += 9973) {
    for (const o of many)
      if (one.params[i] !== o.params[i])
        throw new Error(`${o.threads}-thread and single-thread kernels disagree at ${i}`);
    if (Math.abs(one.params[i]! - plain.p[i]!) > 1e-5 * Math.max(Math.abs(plain.p[i]!), 1e-3))
      throw new Error(`kernel and plain loop disagree at ${i}: ${one.params[i]} vs ${plain.p[i]}`);
  }
  await one.close();
  for (const o of many) await o.close();
  results.push({
    size,
    reps,
    plain: timing(size, times.plain.wall, times.plain.cpu),
    wasm1: timing(size, times.one.wall, times.one.cpu),
    threaded: many.map((o, k) => ({ threads: o.threads, ...timing(size, times.many[k]!.wall, times.many[k]!.cpu) })),
  });
  process.stderr.write(`size ${size}: done\n`);
}

const M = (x: number): string => (x / 1e6).toFixed(0);
// Wall-clock rates, then per-CPU-second (per-thread) rates and their ratios to torch's 160 M/s.
const head = [
  'size',
  'plain M/s',
  'wasm 1t M/s',
  ...threadCounts.map((t) => `wasm ${t}t M/s`),
  'plain M/cpu-s',
  'wasm 1t M/cpu-s',
  ...threadCounts.map((t) => `wasm ${t}t M/cpu-s`),
  'wasm/plain (cpu)',
  'wasm 1t vs torch',
  ...threadCounts.map((t) => `${t}t per-thread vs torch`),
];
const rows = results.map((r) => [
  `${r.size / 1e6}M`,
  M(r.plain.paramsPerSec),
  M(r.wasm1.paramsPerSec),
  ...r.threaded.map((x) => M(x.paramsPerSec)),
  M(r.plain.paramsPerCpuSec),
  M(r.wasm1.paramsPerCpuSec),
  ...r.threaded.map((x) => M(x.paramsPerCpuSec)),
  (r.wasm1.paramsPerCpuSec / r.plain.paramsPerCpuSec).toFixed(1) + 'x',
  (r.wasm1.paramsPerCpuSec / TORCH_PER_THREAD).toFixed(2) + 'x',
  ...r.threaded.map((x) => (x.paramsPerCpuSec / TORCH_PER_THREAD).toFixed(2) + 'x'),
]);
const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
const fmt = (cells: string[]): string => cells.map((c, i) => c.padStart(widths[i]!)).join('  ');
const title =
  `host AdamW throughput (median params/s), ${os.cpus()[0]?.model ?? 'cpu'} ` +
  `x${cores}, load ${os.loadavg()[0]!.toFixed(1)}, node ${process.version}`;
console.log(title);
console.log(fmt(head));
for (const r of rows) console.log(fmt(r));
// The same table as markdown beside the JSON, for quoting.
const md = [
  `${title}`,
  '',
  `| ${head.join(' | ')} |`,
  `|${head.map(() => ' ---: ').join('|')}|`,
  ...rows.map((r) => `| ${r.join(' | ')} |`),
].join('\n');

mkdirSync(dirname(args.out!), { recursive: true });
writeFileSync(
  args.out!,
  JSON.stringify(
    {
      benchmark: 'host-adamw',
      date: new Date().toISOString(),
      machine: { cpu: os.cpus()[0]?.model, cores, loadavg: os.loadavg(), node: process.version },
      torchReferencePerThread: TORCH_PER_THREAD,
      unit: 'params/s of wall time and params per CPU-second (medians)',
      results,
    },
    null,
    2,
  ) + '\n',
);
writeFileSync(args.out!.replace(/\.json$/, '') + '.md', md + '\n');
console.log(`wrote ${args.out} and .md`);
