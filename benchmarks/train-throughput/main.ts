// Training throughput of the toy GPT: tokens/s for one forward + backward + AdamW update, for
// the tiny and small presets at batch 8 x T, on each tfjs backend present.
//
//   node --import tsx benchmarks/train-throughput/main.ts [--backends cpu,wasm,webgpu] [--models tiny,small]
//        [--steps N] [--warmup W] [--batch B] [--all-combinations] [--profile] [--merge]
//        [--out benchmarks/results/train-throughput-<machine>.json]
// (--merge keeps the rows of the existing results file for backend/model pairs not re-run.)
//
// Three ways to run the same step, alternated step by step so that the shared machine's load
// hits them alike (we quote medians and ratios):
//   naive   the obvious tfjs model (naive.ts beside this file), whole-model autodiff
//   whole   @zeroring/gpt, whole-model gradients (tf.valueAndGrads over every parameter)
//   engine  @zeroring/gpt through @zeroring/train's BlockwiseEngine + LocalStrategy (each block's
//           forward tape kept for its backward, as every strategy but ZeRO-3 does)
// All three use @zeroring/train's AdamW. Besides wall-clock tokens/s we report tokens per
// second of process CPU time: on a 2-core machine shared with other jobs the wall clock
// measures the neighbours as much as the code, while CPU time of a single-threaded backend
// does not count time spent waiting for a core.
// --profile adds per-kernel times (tf.profile, minimum over 3 steps) of the naive and whole-model
// steps of tiny on wasm.
// Writes benchmarks/results/train-throughput-<machine>.json (e.g. -2vcpu) and prints a table.
import os from 'node:os';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { benchArgs } from '../common/args.ts';
import { resultPath } from '../common/results.ts';
import { tf, initBackend, probeWebGPUAdapter, type BackendLogger, type BackendName } from '@zeroring/backend';
import { CharTokenizer, TextDataset, Rng, createGPT, gptConfig, loadCorpus, type PresetName } from '@zeroring/gpt';
import { uniqueParams } from '@zeroring/train';
import { createNaiveGPT } from './naive.ts';
import { engineRunner, wholeModelRunner, type Runner } from './runners.ts';

const args = benchArgs(import.meta.url, {
  backends: { type: 'string' },
  models: { type: 'string', default: 'tiny,small' },
  steps: { type: 'string' },
  warmup: { type: 'string' },
  batch: { type: 'string', default: '8' },
  'all-combinations': { type: 'boolean', default: false },
  profile: { type: 'boolean', default: false },
  merge: { type: 'boolean', default: false },
  out: { type: 'string', default: resultPath('train-throughput') },
});

type Mode = 'naive' | 'whole' | 'engine';
const MODES: Mode[] = ['naive', 'whole', 'engine'];
const quiet: BackendLogger = { info() {}, warn() {}, debug() {} };
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const cpuMs = (u: NodeJS.CpuUsage) => (u.user + u.system) / 1000;

async function presentBackends(): Promise<BackendName[]> {
  if (args.backends) return args.backends.split(',') as BackendName[];
  const names: BackendName[] = ['cpu', 'wasm'];
  try {
    if (await probeWebGPUAdapter()) names.push('webgpu');
  } catch {
    // No Dawn or no adapter: webgpu is absent from the table.
  }
  return names;
}

/** Which (backend, model) pairs run by default: small only on wasm, the fastest CPU backend. */
function skipReason(backend: BackendName, preset: PresetName): string | undefined {
  if (args['all-combinations'] || preset === 'tiny' || backend === 'wasm') return undefined;
  return `small on ${backend} takes minutes per step here; pass --all-combinations to run it`;
}

const text = loadCorpus();
const tok = CharTokenizer.fromText(text);
const data = new TextDataset(tok.encode(text), { seed: 0 });
const B = Number(args.batch);
const backends = await presentBackends();
const presets = args.models!.split(',') as PresetName[];

interface Row {
  backend: string;
  model: PresetName;
  params: number;
  batch: number;
  blockSize: number;
  mode: Mode;
  steps: number;
  medianStepMs: number;
  medianCpuMs: number;
  tokensPerSec: number;
  tokensPerCpuSec: number;
  initialLoss: number;
  finalLoss: number;
}
const rows: Row[] = [];
const skipped: Array<{ backend: string; model: string; reason: string }> = [];
const profiles: Record<string, Array<{ kernel: string; calls: number; ms: number }>> = {};
const loadStart = os.loadavg();
// e.g. wasm SIMD/threads and the extra kernels @zeroring/backend registered
const backendDetails: Record<string, unknown> = {};
// Earlier results for the pairs this run does not measure (--merge).
const kept: { rows: Row[]; skipped: typeof skipped; profiles: typeof profiles; backends: Record<string, unknown> } = {
  rows: [],
  skipped: [],
  profiles: {},
  backends: {},
};
if (args.merge && existsSync(args.out!)) {
  const old = JSON.parse(readFileSync(args.out!, 'utf8'));
  const rerun = (b: string, m: string) => backends.includes(b as BackendName) && presets.includes(m as PresetName);
  kept.rows = (old.rows ?? []).filter((r: Row) => !rerun(r.backend, r.model));
  kept.skipped = (old.skipped ?? []).filter((r: { backend: string; model: string }) => !rerun(r.backend, r.model));
  kept.profiles = Object.fromEntries(
    Object.entries(old.profiles ?? {}).filter(([k]) => !rerun(k.split('/')[0]!, k.split('/')[1]!)),
  ) as typeof profiles;
  kept.backends = Object.fromEntries(
    Object.entries(old.backends ?? {}).filter(([b]) => !backends.includes(b as BackendName)),
  );
}

for (const backend of backends) {
  const info = await initBackend(backend, { logger: quiet });
  backendDetails[info.name] = { ...info.details, ...(info.adapter ? { adapter: info.adapter } : {}) };
  for (const preset of presets) {
    const reason = skipReason(backend, preset);
    if (reason) {
      skipped.push({ backend, model: preset, reason });
      continue;
    }
    const cfg = gptConfig(preset, tok.vocabSize);
    const T = cfg.blockSize;
    const small = preset === 'small';
    // Fewer steps where one step takes seconds (small; the cpu and software-WebGPU backends).
    const slow = small || backend !== 'wasm';
    const warmup = Number(args.warmup ?? (slow ? 1 : 3));
    const steps = Number(args.steps ?? (slow ? 2 : 15));
    const init = createGPT(cfg).initParams(0);
    // The naive model's autodiff keeps every [B*H, T, T] intermediate: at small it outgrows the
    // wasm heap (abort), so it runs at tiny only unless asked for.
    const modes: Mode[] = small && !args['all-combinations'] ? ['whole', 'engine'] : MODES;
    const runners: Partial<Record<Mode, Runner>> = {};
    for (const mode of modes) {
      runners[mode] =
        mode === 'engine'
          ? await engineRunner(createGPT(cfg), init)
          : wholeModelRunner(mode === 'naive' ? createNaiveGPT(cfg) : createGPT(cfg), init);
    }
    const wall: Record<Mode, number[]> = { naive: [], whole: [], engine: [] };
    const cpu: Record<Mode, number[]> = { naive: [], whole: [], engine: [] };
    const losses: Record<Mode, number[]> = { naive: [], whole: [], engine: [] };
    const rng = new Rng(1);
    process.stdout.write(`${backend} ${preset}: `);
    for (let s = 0; s < warmup + steps; s++) {
      const batch = data.batch(rng, B, T);
      const input = tf.tensor2d(batch.input, [B, T], 'int32');
      const targets = tf.tensor2d(batch.targets, [B, T], 'int32');
      for (const mode of modes) {
        const c0 = process.cpuUsage();
        const t0 = performance.now();
        losses[mode].push(await runners[mode]!.step(input, targets));
        if (s >= warmup) {
          wall[mode].push(performance.now() - t0);
          cpu[mode].push(cpuMs(process.cpuUsage(c0)));
        }
      }
      tf.dispose([input, targets]);
      process.stdout.write('.');
    }
    process.stdout.write('\n');
    if (args.profile && backend === 'wasm' && preset === 'tiny') {
      const batch = data.batch(rng, B, T);
      const input = tf.tensor2d(batch.input, [B, T], 'int32');
      const targets = tf.tensor2d(batch.targets, [B, T], 'int32');
      for (const mode of ['naive', 'whole'] as const) {
        const runs: Array<Array<{ kernel: string; ms: number }>> = [];
        for (let r = 0; r < 3; r++) {
          let p: Promise<number> | undefined;
          const prof = await tf.profile(() => {
            p = runners[mode]!.step(input, targets);
          });
          await p;
          runs.push(
            prof.kernels.map((k) => ({
              kernel: `${k.name} ${JSON.stringify(k.inputShapes)}`,
              ms: Number(k.kernelTimeMs),
            })),
          );
        }
        const byKernel = new Map<string, { calls: number; ms: number }>();
        runs[0]!.forEach((k, i) => {
          const ms = Math.min(...runs.map((r) => r[i]?.ms ?? Infinity));
          const e = byKernel.get(k.kernel) ?? { calls: 0, ms: 0 };
          byKernel.set(k.kernel, { calls: e.calls + 1, ms: e.ms + ms });
        });
        profiles[`${backend}/${preset}/${mode}`] = [...byKernel]
          .map(([kernel, e]) => ({ kernel, ...e }))
          .sort((a, b) => b.ms - a.ms)
          .slice(0, 15);
      }
      tf.dispose([input, targets]);
    }
    const paramCount = [...init.values()].reduce((n, a) => n + a.length, 0);
    for (const mode of modes) {
      const w = median(wall[mode]);
      const c = median(cpu[mode]);
      rows.push({
        backend: info.name,
        model: preset,
        params: paramCount,
        batch: B,
        blockSize: T,
        mode,
        steps,
        medianStepMs: w,
        medianCpuMs: c,
        tokensPerSec: (B * T * 1000) / w,
        tokensPerCpuSec: (B * T * 1000) / c,
        initialLoss: losses[mode][0]!,
        finalLoss: losses[mode].at(-1)!,
      });
      await runners[mode]!.dispose();
    }
    writeResult();
  }
}

function writeResult(): void {
  const result = {
    benchmark: 'train-throughput',
    date: new Date().toISOString(),
    machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, loadavgStart: loadStart, loadavgEnd: os.loadavg() },
    tfjs: tf.version_core,
    backends: { ...kept.backends, ...backendDetails },
    note: 'tokens/s = batch*T / median step (forward+backward+AdamW); tokensPerCpuSec uses process CPU time per step',
    rows: [...rows, ...kept.rows],
    skipped: [...skipped, ...kept.skipped],
    ...(args.profile || args.merge ? { profiles: { ...kept.profiles, ...profiles } } : {}),
  };
  mkdirSync(dirname(args.out!), { recursive: true });
  writeFileSync(args.out!, JSON.stringify(result, null, 2) + '\n');
}
writeResult();

const loadText = (l: number[]): string => l.map((x) => x.toFixed(1)).join(' ');
console.log(
  `\ntrain throughput, batch ${B} x T, median of timed steps ` +
    `(load average ${loadText(loadStart)} -> ${loadText(os.loadavg())})`,
);
console.log(
  [
    'backend'.padEnd(8),
    'model'.padEnd(6),
    'mode'.padEnd(7),
    'step ms'.padStart(9),
    'tok/s'.padStart(8),
    'cpu ms'.padStart(9),
    'tok/cpu-s'.padStart(10),
    'vs naive'.padStart(9),
    'loss'.padStart(14),
  ].join(' '),
);
for (const r of rows) {
  const naive = rows.find((x) => x.backend === r.backend && x.model === r.model && x.mode === 'naive');
  console.log(
    [
      r.backend.padEnd(8),
      r.model.padEnd(6),
      r.mode.padEnd(7),
      r.medianStepMs.toFixed(0).padStart(9),
      r.tokensPerSec.toFixed(0).padStart(8),
      r.medianCpuMs.toFixed(0).padStart(9),
      r.tokensPerCpuSec.toFixed(0).padStart(10),
      (naive ? `${(naive.medianCpuMs / r.medianCpuMs).toFixed(2)}x` : '-').padStart(9),
      `${r.initialLoss.toFixed(2)}->${r.finalLoss.toFixed(2)}`.padStart(14),
    ].join(' '),
  );
}
for (const s of skipped) console.log(`skipped ${s.backend} ${s.model}: ${s.reason}`);
if (args.profile) {
  for (const [k, list] of Object.entries(profiles)) {
    console.log(`\nslowest kernels, ${k} (ms, min of 3 profiled steps)`);
    for (const e of list.slice(0, 10))
      console.log(`${e.ms.toFixed(2).padStart(9)} ${String(e.calls).padStart(4)}  ${e.kernel}`);
  }
}
