// Matmul throughput of each tfjs backend present, side by side in one run: the numbers behind
// initBackend('auto')'s order (packages/backend/src/auto.ts). Shapes: a 512² square matmul and
// the matmuls of one GPT step at the tiny preset (B·T = 8·64 rows, C = 128, H = 4), forward
// and backward (transposed operands, which wasm runs through XNNPACK only thanks to
// packages/backend/src/wasm-kernels/batch-mat-mul.ts).
//
//   node --import tsx benchmarks/backend-matmul/main.ts [--backends cpu,wasm,webgpu,tensorflow] [--reps R]
//        [--out benchmarks/results/backend-matmul-<machine>.json]
//
// The machine is shared and noisy, so backends alternate within each repetition and we quote
// medians and ratios to cpu. Each measurement issues `inner` matmuls and waits for the last
// result's data, so a GPU backend's queue is drained without paying one readback per op.
// Writes benchmarks/results/backend-matmul-<machine>.json (e.g. -2vcpu) and prints a table.
import os from 'node:os';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { benchArgs } from '../common/args.ts';
import { resultPath } from '../common/results.ts';
import {
  tf,
  initBackend,
  probeWebGPUAdapter,
  tensorflowInstalled,
  type AdapterInfo,
  type BackendLogger,
  type BackendName,
} from '@zeroring/backend';

const args = benchArgs(import.meta.url, {
  backends: { type: 'string' },
  reps: { type: 'string', default: '7' },
  out: { type: 'string', default: resultPath('backend-matmul') },
});

interface Shape {
  name: string;
  a: number[];
  b: number[];
  transposeA?: boolean;
  transposeB?: boolean;
}
// B·T = 512 rows of width C = 128 (tiny preset, batch 8 × T 64).
const SHAPES: Shape[] = [
  { name: 'square 512x512 @ 512x512', a: [512, 512], b: [512, 512] },
  { name: 'qkv 512x128 @ 128x384', a: [512, 128], b: [128, 384] },
  { name: 'mlp 512x128 @ 128x512', a: [512, 128], b: [128, 512] },
  // The backward of the qkv matmul: dX = dY·Wᵀ and dW = Xᵀ·dY (transposed operands).
  { name: 'qkv dX 512x384 @ 128x384^T', a: [512, 384], b: [128, 384], transposeB: true },
  { name: 'qkv dW 512x128^T @ 512x384', a: [512, 128], b: [512, 384], transposeA: true },
  { name: 'attn 32x64x32 @ 32x64x32^T', a: [32, 64, 32], b: [32, 64, 32], transposeB: true },
];
const flops = (s: Shape) => {
  const [m, k] = s.transposeA ? [s.a.at(-1)!, s.a.at(-2)!] : [s.a.at(-2)!, s.a.at(-1)!];
  const n = s.transposeB ? s.b.at(-2)! : s.b.at(-1)!;
  return 2 * s.a.slice(0, -2).reduce((x, y) => x * y, 1) * m * k * n;
};

const quiet: BackendLogger = { info() {}, warn() {}, debug() {} };
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function presentBackends(): Promise<{ names: BackendName[]; adapter?: AdapterInfo }> {
  if (args.backends) return { names: args.backends.split(',') as BackendName[] };
  const names: BackendName[] = ['cpu', 'wasm'];
  let adapter: AdapterInfo | undefined;
  try {
    adapter = (await probeWebGPUAdapter())?.info;
    if (adapter) names.push('webgpu');
  } catch {
    // No Dawn here: webgpu is simply absent from the table.
  }
  if (tensorflowInstalled()) names.push('tensorflow');
  return { names, adapter };
}

/** Milliseconds per matmul: `inner` ops issued back to back, then one readback. */
async function measure(s: Shape, inner: number): Promise<number> {
  const a = tf.randomUniform(s.a, -1, 1);
  const b = tf.randomUniform(s.b, -1, 1);
  await Promise.all([a.data(), b.data()]); // inputs resident before timing
  const t0 = performance.now();
  const outs: tf.Tensor[] = [];
  for (let i = 0; i < inner; i++) outs.push(tf.matMul(a, b, s.transposeA ?? false, s.transposeB ?? false));
  await outs.at(-1)!.data();
  const ms = (performance.now() - t0) / inner;
  tf.dispose([a, b, ...outs]);
  return ms;
}

const { names, adapter } = await presentBackends();
const reps = Number(args.reps);
for (const n of names) await initBackend(n, { logger: quiet });

const samples = new Map<string, number[]>(); // `${shape}|${backend}` -> ms
for (const s of SHAPES) {
  const inner = flops(s) > 1e8 ? 2 : 8;
  for (const n of names) {
    await initBackend(n, { logger: quiet });
    await measure(s, inner); // warm-up: shader compilation, XNNPACK packing, JIT
  }
  for (let r = 0; r < reps; r++) {
    for (const n of names) {
      await initBackend(n, { logger: quiet });
      const key = `${s.name}|${n}`;
      samples.set(key, [...(samples.get(key) ?? []), await measure(s, inner)]);
    }
  }
}

const rows = SHAPES.flatMap((s) =>
  names.map((n) => {
    const ms = median(samples.get(`${s.name}|${n}`)!);
    const cpuMs = median(samples.get(`${s.name}|cpu`) ?? [NaN]);
    return { shape: s.name, backend: n, medianMs: ms, gflops: flops(s) / ms / 1e6, speedupVsCpu: cpuMs / ms };
  }),
);

console.log(`\nmatmul, median of ${reps} (ms per op; GFLOP/s; × vs cpu)`);
console.log(['shape'.padEnd(28), ...names.map((n) => n.padStart(24))].join(''));
for (const s of SHAPES) {
  const cells = names.map((n) => {
    const r = rows.find((x) => x.shape === s.name && x.backend === n)!;
    return `${r.medianMs.toFixed(2)} ms ${r.gflops.toFixed(1)} GF ${r.speedupVsCpu.toFixed(1)}x`.padStart(24);
  });
  console.log([s.name.padEnd(28), ...cells].join(''));
}

mkdirSync(dirname(args.out!), { recursive: true });
writeFileSync(
  args.out!,
  JSON.stringify(
    {
      benchmark: 'backend-matmul',
      date: new Date().toISOString(),
      machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version, tfjs: tf.version_core },
      webgpuAdapter: adapter ?? null,
      reps,
      results: rows,
    },
    null,
    2,
  ) + '\n',
);
console.log(`\nwrote ${args.out}`);
