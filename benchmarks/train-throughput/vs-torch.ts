// tfjs-wasm vs PyTorch on one CPU thread, training the tiny GPT (batch 8 x 64), alternated in
// rounds so both see the same machine load: the comparison the throughput goal is stated in
// ("torch 1.13 on one thread: ~1.9k tokens/s on these 2-core machines").
//
//   node --import tsx benchmarks/train-throughput/vs-torch.ts [--rounds R] [--steps N] [--python /usr/bin/python3]
//        [--out benchmarks/results/train-throughput-vs-torch-<machine>.json]
//
// Needs python3 with torch (Debian: apt-get install python3-torch, which is torch 1.13.1).
// Each round runs the torch script (torch.py beside this file) for N steps, then N
// tfjs steps (whole-model gradients, and through the blockwise engine) in this process. We quote
// the median over rounds of each side's median, wall and CPU time, and their ratio.
// Writes benchmarks/results/train-throughput-vs-torch-<machine>.json (e.g. -2vcpu) and prints a table.
import os from 'node:os';
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchArgs } from '../common/args.ts';
import { resultPath } from '../common/results.ts';
import { tf, initBackend } from '@zeroring/backend';
import { Rng, createGPT } from '@zeroring/gpt';
import { engineRunner, wholeModelRunner, type Runner } from './runners.ts';

const here = dirname(fileURLToPath(import.meta.url));
const args = benchArgs(import.meta.url, {
  rounds: { type: 'string', default: '3' },
  steps: { type: 'string', default: '10' },
  python: { type: 'string', default: process.env.PYTHON ?? 'python3' },
  out: { type: 'string', default: resultPath('train-throughput-vs-torch') },
});
const rounds = Number(args.rounds);
const steps = Number(args.steps);
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

const B = 8;
const cfg = { vocabSize: 89, blockSize: 64, nLayer: 2, nHead: 4, nEmbd: 128 }; // tiny on Moby Dick's 89 characters
const T = cfg.blockSize;
const info = await initBackend('wasm', { logger: { info() {}, warn() {}, debug() {} } });
const init = createGPT(cfg).initParams(0);
const runners: Record<'whole' | 'engine', Runner> = {
  whole: wholeModelRunner(createGPT(cfg), init),
  engine: await engineRunner(createGPT(cfg), init),
};
const rng = new Rng(0);

interface Side {
  wallMs: number[];
  cpuMs: number[];
}
const sides: Record<'torch' | 'whole' | 'engine', Side> = {
  torch: { wallMs: [], cpuMs: [] },
  whole: { wallMs: [], cpuMs: [] },
  engine: { wallMs: [], cpuMs: [] },
};
let torchVersion = '';

async function tfjsRound(mode: 'whole' | 'engine'): Promise<void> {
  const wall: number[] = [];
  const cpu: number[] = [];
  for (let s = 0; s < steps + 3; s++) {
    const ids = Int32Array.from({ length: B * T }, () => rng.int(cfg.vocabSize));
    const tg = Int32Array.from({ length: B * T }, () => rng.int(cfg.vocabSize));
    const x = tf.tensor2d(ids, [B, T], 'int32');
    const y = tf.tensor2d(tg, [B, T], 'int32');
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await runners[mode].step(x, y);
    if (s >= 3) {
      wall.push(performance.now() - t0);
      const c = process.cpuUsage(c0);
      cpu.push((c.user + c.system) / 1000);
    }
    tf.dispose([x, y]);
  }
  sides[mode].wallMs.push(median(wall));
  sides[mode].cpuMs.push(median(cpu));
}

for (let r = 0; r < rounds; r++) {
  const out = execFileSync(
    args.python!,
    [resolve(here, 'torch.py'), '--steps', String(steps), '--warmup', '3', '--batch', String(B)],
    { encoding: 'utf8' },
  );
  const t = JSON.parse(out.trim().split('\n').at(-1)!) as { torch: string; medianStepMs: number; medianCpuMs: number };
  torchVersion = t.torch;
  sides.torch.wallMs.push(t.medianStepMs);
  sides.torch.cpuMs.push(t.medianCpuMs);
  await tfjsRound('whole');
  await tfjsRound('engine');
  process.stdout.write(`round ${r + 1}/${rounds} done\n`);
}

const tokens = B * T;
const rows = (['torch', 'whole', 'engine'] as const).map((k) => {
  const wall = median(sides[k].wallMs);
  const cpu = median(sides[k].cpuMs);
  return {
    side:
      k === 'torch'
        ? `torch ${torchVersion} (1 thread)`
        : `tfjs ${info.name} ${k === 'whole' ? 'whole-model' : 'engine'}`,
    medianStepMs: wall,
    medianCpuMs: cpu,
    tokensPerSec: (tokens * 1000) / wall,
    tokensPerCpuSec: (tokens * 1000) / cpu,
    roundsWallMs: sides[k].wallMs,
    roundsCpuMs: sides[k].cpuMs,
  };
});
const torchRow = rows[0]!;
const result = {
  benchmark: 'train-throughput-vs-torch',
  date: new Date().toISOString(),
  model: 'tiny',
  batch: B,
  blockSize: T,
  rounds,
  stepsPerRound: steps,
  machine: { cpus: os.cpus().length, loadavg: os.loadavg() },
  tfjs: tf.version_core,
  backend: info.name,
  wasm: info.details,
  rows: rows.map((r) => ({
    ...r,
    vsTorchWall: torchRow.medianStepMs / r.medianStepMs,
    vsTorchCpu: torchRow.medianCpuMs / r.medianCpuMs,
  })),
};
mkdirSync(dirname(args.out!), { recursive: true });
writeFileSync(args.out!, JSON.stringify(result, null, 2) + '\n');
console.log(
  `\ntiny GPT training, batch ${B} x ${T}, median of ${rounds} rounds x ${steps} steps (load average ${os
    .loadavg()
    .map((x) => x.toFixed(1))
    .join(' ')})`,
);
console.log(
  [
    'side'.padEnd(34),
    'step ms'.padStart(8),
    'tok/s'.padStart(7),
    'cpu ms'.padStart(8),
    'tok/cpu-s'.padStart(10),
    'vs torch'.padStart(9),
  ].join(' '),
);
for (const r of result.rows) {
  console.log(
    [
      r.side.padEnd(34),
      r.medianStepMs.toFixed(0).padStart(8),
      r.tokensPerSec.toFixed(0).padStart(7),
      r.medianCpuMs.toFixed(0).padStart(8),
      r.tokensPerCpuSec.toFixed(0).padStart(10),
      `${r.vsTorchWall.toFixed(2)}x`.padStart(9),
    ].join(' '),
  );
}
