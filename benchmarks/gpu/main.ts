// The GPU benchmark: training throughput, MFU and the GPU work per step of the GPT presets
// through `zeroring train --backend webgpu` (the path users run), with 1 and 2 processes
// sharing the GPU (DDP), plus a matmul table of tfjs's tf.matMul against the tiled and the
// register-tile WGSL programs on the GPT's shapes. Sized to finish within --time-limit on a lent GPU; on a software
// adapter (lavapipe) run it with fewer models and steps.
//
//   node --import tsx benchmarks/gpu/main.ts [--models tiny,small,gpt2] [--nprocs 1,2] [--steps S]
//        [--warmup 2] [--batch-size B] [--time-limit 270] [--matmul-seconds 45] [--matmul-models LIST]
//        [--matmul-reps 5] [--no-matmul] [--peak-tflops X] [--cli packages/cli/bin/zeroring.js]
//        [--data FILE] [--machine TAG] [--out-dir DIR | --out FILE]
//
//   --models, --nprocs   the presets and process counts to train (each model with each count)
//   --steps S            steps per run (default: tiny 12, small 8, gpt2 6); the first --warmup
//                        steps (default 2) compile shaders and choose each matmul shape's
//                        kernel, and are left out of the medians
//   --batch-size B       windows per rank per step (default: each preset's `zeroring train` default)
//   --time-limit S       seconds for everything; a run predicted not to fit is skipped with a line
//                        saying so, and a run past the deadline is killed (its finished steps count)
//   --matmul-seconds S   seconds kept for the matmul table, which runs after training
//   --peak-tflops X      the GPU's fp32 peak for MFU; default from benchmarks/common/flops.ts's table
//                        (H200: 67), none (MFU omitted) for software or unknown adapters
//   --cli FILE           the zeroring command to run (a bundle of it on a machine without node_modules)
//   --data FILE          train on this text instead of Moby Dick (device-run.sh passes Moby Dick as a
//                        file: a bundle cannot load the corpus package)
//
// Writes gpu-<machine>.json and gpu-<machine>.md into --out-dir, else $OUT when that is set, else
// benchmarks/results/ (<machine>: the GPU's model, e.g. h200, or the software adapter's name,
// e.g. lavapipe). Exits 1 when there is no WebGPU adapter or nothing could be measured. On a
// bare GPU machine: benchmarks/gpu/device-run.sh (see the README).
import os from 'node:os';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchArgs } from '../common/args.ts';
import { MFU_FORMULA, fp32Peak, trainFlopsPerToken, type Peak } from '../common/flops.ts';
import { RESULTS_DIR, machineTag } from '../common/results.ts';
import { initBackend, probeWebGPUAdapter, tf, type AdapterInfo } from '@zeroring/backend';
import { CharTokenizer, createGPT, gptConfig, loadCorpus, presets, type PresetName } from '@zeroring/gpt';
import { PRESET_DEFAULTS } from 'zeroring';
import { gptMatmulShapes, flopsOf, measureShape, type MatmulRow } from './matmul.ts';
import { markdown } from './report.ts';
import { trainRun, type RunResult } from './runs.ts';

const args = benchArgs(import.meta.url, {
  models: { type: 'string', default: 'tiny,small,gpt2' },
  nprocs: { type: 'string', default: '1,2' },
  steps: { type: 'string' },
  warmup: { type: 'string', default: '2' },
  'batch-size': { type: 'string' },
  'time-limit': { type: 'string', default: '270' },
  'matmul-seconds': { type: 'string', default: '45' },
  'matmul-models': { type: 'string' },
  'matmul-reps': { type: 'string', default: '5' },
  'no-matmul': { type: 'boolean', default: false },
  'peak-tflops': { type: 'string' },
  cli: { type: 'string', default: fileURLToPath(new URL('../../packages/cli/bin/zeroring.js', import.meta.url)) },
  data: { type: 'string' },
  machine: { type: 'string' },
  'out-dir': { type: 'string' },
  out: { type: 'string' },
});

const DEFAULT_STEPS: Record<PresetName, number> = { tiny: 12, small: 8, gpt2: 6 };

function positive(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0) fail(`--${name} '${text}' is not a positive number`);
  return n;
}

function presetList(name: string, text: string): PresetName[] {
  const list = text.split(',').filter(Boolean);
  for (const m of list) if (!(m in presets)) fail(`--${name}: unknown model '${m}'; expected ${Object.keys(presets)}`);
  return list as PresetName[];
}

function fail(msg: string): never {
  process.stderr.write(`gpu benchmark: ${msg}\n`);
  process.exit(1);
}

const models = presetList('models', args.models!);
const matmulModels = presetList('matmul-models', args['matmul-models'] ?? args.models!);
const nprocs = args.nprocs!.split(',').map((n) => positive('nprocs', n)!);
const warmup = Number(args.warmup);
const timeLimitS = positive('time-limit', args['time-limit'])!;
const matmulS = args['no-matmul'] ? 0 : positive('matmul-seconds', args['matmul-seconds'])!;
const batchFlag = positive('batch-size', args['batch-size']);
const t0 = performance.now();
const elapsedS = () => (performance.now() - t0) / 1000;
const say = (line: string) => process.stdout.write(`${line}\n`);

// ---- the adapter ----

interface AdapterRecord extends AdapterInfo {
  shaderF16: boolean;
  features: string[];
  limits: Record<string, number>;
}

async function adapterRecord(): Promise<AdapterRecord> {
  const probed = await probeWebGPUAdapter().catch((err: Error) => fail(`Dawn failed to load: ${err.message}`));
  if (!probed) fail('no WebGPU adapter (no Vulkan driver); nothing to measure');
  const { adapter, info } = probed;
  const l = adapter.limits;
  return {
    ...info,
    shaderF16: adapter.features.has('shader-f16'),
    features: [...adapter.features].sort(),
    limits: {
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxBufferSize: l.maxBufferSize,
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
    },
  };
}

/** A hardware GPU by its model (h200); a software adapter by its driver (lavapipe). */
function machineOf(a: AdapterRecord): string {
  if (args.machine) return args.machine;
  if (!a.software) return machineTag(a);
  return /lavapipe|llvmpipe/i.test(`${a.description} ${a.device}`)
    ? 'lavapipe'
    : /swiftshader/i.test(`${a.description} ${a.device}`)
      ? 'swiftshader'
      : 'software';
}

// ---- the models ----

interface ModelFacts {
  params: number;
  vocabSize: number;
  flopsPerToken: number;
  batchPerRank: number;
}

const vocabSize = CharTokenizer.fromText(loadCorpus(args.data)).vocabSize;
function facts(m: PresetName): ModelFacts {
  const model = createGPT(gptConfig(m, vocabSize));
  const seen = new Map<string, number>();
  for (const b of model.blocks)
    for (const p of b.params)
      seen.set(
        p.name,
        p.shape.reduce((x, y) => x * y, 1),
      );
  const params = [...seen.values()].reduce((x, y) => x + y, 0);
  const flopsPerToken = trainFlopsPerToken({ params, ...presets[m] });
  return { params, vocabSize, flopsPerToken, batchPerRank: batchFlag ?? PRESET_DEFAULTS[m].batchSize };
}

// ---- training runs ----

interface RunRow extends RunResult {
  params: number;
  flopsPerToken: number;
  achievedTflops?: number;
  mfu?: number;
  /** tokens/s of this run over the same model's 1-process run. */
  ofOneProcess?: number;
}

interface Skipped {
  what: string;
  reason: string;
}

/** Seconds a run of `m` on `nproc` processes should take, from the runs so far (undefined: no basis). */
function predictS(m: PresetName, nproc: number, steps: number, done: RunRow[]): number | undefined {
  const ok = done.filter((r) => r.stepMs !== undefined);
  const base = ok.find((r) => r.model === m) ?? ok.at(-1);
  if (!base) return undefined;
  const stepS = base.stepMs! / 1000;
  const overheadS = Math.max(0, base.wallSeconds - base.stepsRun * stepS);
  // The GPU's work per step scales with FLOPs per token, the windows per step and the processes
  // sharing it; conservative for GPUs, which run larger matmuls more efficiently.
  const work = (r: { flopsPerToken: number; nproc: number }, b: number, t: number) => r.flopsPerToken * b * t * r.nproc;
  const f = facts(m);
  const scale =
    work({ flopsPerToken: f.flopsPerToken, nproc }, f.batchPerRank, presets[m].blockSize) /
    work(base, base.batchPerRank ?? f.batchPerRank, presets[base.model as PresetName].blockSize);
  return overheadS + steps * stepS * scale;
}

async function trainAll(peak: Peak | undefined, skipped: Skipped[]): Promise<RunRow[]> {
  const done: RunRow[] = [];
  const deadlineS = timeLimitS - matmulS;
  for (const m of models) {
    const f = facts(m);
    const steps = positive('steps', args.steps) ?? DEFAULT_STEPS[m];
    for (const nproc of nprocs) {
      const what = `${m} x${nproc}`;
      const leftS = deadlineS - elapsedS();
      const predicted = predictS(m, nproc, steps, done);
      if (leftS < 5 || (predicted !== undefined && predicted > leftS)) {
        const left = Math.max(0, leftS).toFixed(0);
        const reason = `predicted ${predicted?.toFixed(0) ?? '?'} s, ${left} s left for training`;
        say(`skipped ${what}: ${reason} (--time-limit ${timeLimitS})`);
        skipped.push({ what, reason });
        continue;
      }
      say(`training ${what}: ${steps} steps, batch ${f.batchPerRank} per rank (${leftS.toFixed(0)} s left)`);
      const r = await trainRun({
        model: m,
        nproc,
        steps,
        warmup,
        batchSize: batchFlag,
        data: args.data,
        cli: args.cli!,
        timeoutMs: leftS * 1000,
      });
      const row: RunRow = { ...r, params: f.params, flopsPerToken: f.flopsPerToken };
      if (r.tokensPerSec !== undefined) {
        row.achievedTflops = (r.tokensPerSec * f.flopsPerToken) / 1e12;
        if (peak) row.mfu = row.achievedTflops / peak.tflops;
        const one = done.find((d) => d.model === m && d.nproc === 1 && d.tokensPerSec !== undefined);
        if (one && nproc !== 1) row.ofOneProcess = r.tokensPerSec / one.tokensPerSec!;
      }
      done.push(row);
      say(
        r.tokensPerSec !== undefined
          ? `  ${Math.round(r.tokensPerSec)} tokens/s, step ${r.stepMs!.toFixed(0)} ms` +
              (row.mfu !== undefined ? `, MFU ${(100 * row.mfu).toFixed(2)}%` : '') +
              (r.gpuPerStep ? `, ${r.gpuPerStep.dispatches} dispatches/step` : '') +
              (r.timedOut ? ` (killed at the deadline after ${r.stepsRun} steps)` : '')
          : `  failed: ${r.error}`,
      );
    }
  }
  return done;
}

// ---- the matmul table ----

async function matmulTable(skipped: Skipped[]): Promise<MatmulRow[]> {
  if (matmulS === 0) return [];
  await initBackend('webgpu', { logger: { info() {}, warn() {}, debug() {} } });
  const rows: MatmulRow[] = [];
  const reps = positive('matmul-reps', args['matmul-reps'])!;
  const sampleMs = 20;
  // Larger matmuls run at higher GFLOP/s: predict each shape from the largest one so far
  // (the models come smallest first), at the slower implementation's rate.
  let basis: MatmulRow | undefined;
  for (const m of matmulModels) {
    const f = facts(m);
    const p = presets[m];
    for (const s of gptMatmulShapes(m, f.batchPerRank * p.blockSize, p.nEmbd, f.vocabSize)) {
      const leftS = timeLimitS - elapsedS();
      // Three implementations, a warm-up, the output checks and `reps` samples of each.
      const slowest = basis ? Math.min(basis.tfjs.gflops, basis.tiled.gflops, basis.register.gflops) : 0;
      const opS = basis ? flopsOf(s) / slowest / 1e9 : 0;
      const predictedS = 3 * (3 + reps) * Math.max(opS, sampleMs / 1000);
      if (leftS < 1 || predictedS > leftS) {
        skipped.push({
          what: `matmul ${m} ${s.name}`,
          reason: `predicted ${predictedS.toFixed(1)} s, ${leftS.toFixed(1)} s left`,
        });
        continue;
      }
      const row = await measureShape(s, { reps, sampleMs });
      if (!basis || row.gflop >= basis.gflop) basis = row;
      rows.push(row);
      say(
        `matmul ${m} ${s.name.padEnd(13)} ${`${s.m}x${s.k}x${s.n}`.padEnd(16)} tfjs ${row.tfjs.gflops.toFixed(1)} ` +
          `tiled ${row.tiled.gflops.toFixed(1)} register ${row.register.gflops.toFixed(1)} GFLOP/s -> ${row.faster}`,
      );
    }
  }
  const cut = skipped.filter((s) => s.what.startsWith('matmul')).length;
  if (cut > 0) say(`skipped ${cut} matmul shapes: past --time-limit ${timeLimitS}`);
  return rows;
}

// ---- main ----

const adapter = await adapterRecord();
const machine = machineOf(adapter);
const peak = fp32Peak(adapter, positive('peak-tflops', args['peak-tflops']));
say(
  `adapter: ${adapter.description} (${adapter.vendor} ${adapter.device}${adapter.software ? ', software' : ''}), ` +
    `shader-f16 ${adapter.shaderF16 ? 'yes' : 'no'}, fp32 peak ${peak ? `${peak.tflops} TFLOP/s` : 'unknown (no MFU)'}`,
);
const skipped: Skipped[] = [];
const runs = await trainAll(peak, skipped);
const matmul = await matmulTable(skipped);
const report = {
  benchmark: 'gpu',
  date: new Date().toISOString(),
  machine: { name: machine, cpus: os.cpus().length, node: process.version, tfjs: tf.version_core },
  adapter,
  peak: peak ? { fp32Tflops: peak.tflops, source: peak.source } : ('unknown' as const),
  mfuFormula: MFU_FORMULA,
  options: {
    models,
    nprocs,
    steps: args.steps ?? DEFAULT_STEPS,
    warmup,
    batchSize: batchFlag ?? 'preset default',
    data: args.data ?? 'moby-dick',
    timeLimitS,
    matmulS,
  },
  command: 'zeroring train --backend webgpu --model M --nproc P --steps S --gpu-counts --sample-tokens 0',
  runs,
  matmul,
  skipped,
  wallSeconds: elapsedS(),
};
const out = args.out ?? join(args['out-dir'] ?? (process.env.OUT || RESULTS_DIR), `gpu-${machine}.json`);
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, JSON.stringify(report, null, 2) + '\n');
writeFileSync(out.replace(/\.json$/, '') + '.md', markdown(report));
say(`wrote ${out} and its .md (${elapsedS().toFixed(0)} s)`);
const measured = runs.some((r) => r.tokensPerSec !== undefined) || matmul.length > 0;
// Dawn's instance can keep the event loop alive after the last GPU work.
process.exit(measured ? 0 : 1);
