// The blockwise engine on a real GPU through WebGPU, as one short run: the GPT tiny preset's
// gradients from BlockwiseEngine against whole-model tf.variableGrads (relative error per
// parameter), tensor count across training steps, and training throughput (tokens/s, median
// step) for tiny and small with LocalStrategy + AdamW. Meant for a GPU machine (how to run it
// there: benchmarks/device-check/README.md); any backend runs it anywhere:
//
//   node --import tsx benchmarks/device-check/engine.ts [webgpu|wasm|cpu|tensorflow]
//
// Writes engine-<gpu>.json (e.g. engine-h200.json) on a hardware GPU through WebGPU, else
// engine-<backend>-<machine>.json (e.g. engine-wasm-2vcpu.json), to $OUT if set, else to
// benchmarks/results/.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { RESULTS_DIR, machineTag } from '../common/results.ts';
import { tf } from '@zeroring/backend';
import { initBackend, type BackendKind } from '@zeroring/backend';
import { createGPT, gptConfig, forwardAll, type GPTModel } from '@zeroring/gpt';
import { BlockwiseEngine, type GradSink } from '@zeroring/train';
import { LocalStrategy } from '@zeroring/train';
import { uniqueParams, type NamedTensors } from '@zeroring/train';

const backend = (process.argv[2] ?? 'webgpu') as BackendKind;
const report: Record<string, unknown> = { date: new Date().toISOString(), node: process.version };
const quiet = { info() {}, warn() {}, debug() {} };
const info = await initBackend(backend, {
  logger: { ...quiet, info: (o: object, m?: string) => console.log('INFO', m, JSON.stringify(o)) },
});
report.backend = { name: info.name, adapter: info.adapter, reason: info.reason };

function randomBatch(seed: number, B: number, T: number, V: number) {
  let s = seed >>> 0;
  const next = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296;
  const ids = Int32Array.from({ length: B * T }, () => Math.floor(next() * V));
  const tg = Int32Array.from({ length: B * T }, () => Math.floor(next() * V));
  return { input: tf.tensor(ids, [B, T], 'int32'), targets: tf.tensor(tg, [B, T], 'int32') };
}

async function gradCheck(model: GPTModel, B: number, T: number) {
  const specs = uniqueParams(model);
  const init = model.initParams(42);
  const { input, targets } = randomBatch(7, B, T, model.config.vocabSize);
  const s = new LocalStrategy();
  await s.setup(model, init);
  const got = new Map<string, Float32Array>();
  const sink: GradSink = {
    async onBlockGrads(_b, grads) {
      for (const [n, g] of Object.entries(grads)) {
        got.set(n, (await g.data()) as Float32Array);
        g.dispose();
      }
    },
  };
  const loss = await new BlockwiseEngine(model).forwardBackward(input, targets, s, sink);
  const vars: Record<string, tf.Variable> = {};
  for (const sp of specs) vars[sp.name] = tf.variable(tf.tensor(init.get(sp.name)!, sp.shape), true, `ref_${sp.name}`);
  const ref = tf.variableGrads(
    () => model.loss(forwardAll(model, vars as NamedTensors, input), targets),
    Object.values(vars),
  );
  const refLoss = (await ref.value.data())[0];
  let worst = 0;
  let worstName = '';
  for (const sp of specs) {
    const want = (await ref.grads[vars[sp.name].name].data()) as Float32Array;
    const have = got.get(sp.name)!;
    let num = 0;
    let den = 0;
    for (let i = 0; i < want.length; i++) {
      num += (have[i] - want[i]) ** 2;
      den += want[i] ** 2;
    }
    const rel = Math.sqrt(num / Math.max(den, 1e-30));
    if (rel > worst) [worst, worstName] = [rel, sp.name];
  }
  tf.dispose([input, targets, ref.value, ...Object.values(ref.grads), ...Object.values(vars)]);
  await s.dispose();
  return {
    loss,
    refLoss,
    worstRelError: worst,
    worstParam: worstName,
    pass: worst < 1e-5 && Math.abs(loss - refLoss) / refLoss < 1e-5,
  };
}

async function throughput(model: GPTModel, B: number, steps: number) {
  const T = model.config.blockSize;
  const s = new LocalStrategy();
  await s.setup(model, model.initParams(1));
  const engine = new BlockwiseEngine(model);
  const times: number[] = [];
  const counts: number[] = [];
  const losses: number[] = [];
  const { input, targets } = randomBatch(3, B, T, model.config.vocabSize); // one batch, learned quickly: loss must fall
  for (let step = 0; step < steps; step++) {
    const t0 = performance.now();
    losses.push(await engine.forwardBackward(input, targets, s, s));
    await s.finishStep({ lr: 1e-3, step, maxGradNorm: 1 });
    times.push(performance.now() - t0);
    counts.push(tf.memory().numTensors);
  }
  tf.dispose([input, targets]);
  await s.dispose();
  const warm = times.slice(2).sort((a, b) => a - b);
  const med = warm[warm.length >> 1];
  return {
    B,
    T,
    steps,
    medianStepMs: Math.round(med * 10) / 10,
    tokensPerSec: Math.round((B * T) / (med / 1000)),
    firstLoss: losses[0],
    lastLoss: losses[losses.length - 1],
    numTensorsConstant: new Set(counts.slice(1)).size === 1,
  };
}

const V = 89; // Moby Dick's character vocabulary
for (const [name, f] of [
  ['gradCheckTiny', () => gradCheck(createGPT(gptConfig('tiny', V)), 4, 64)],
  ['throughputTinyB16', () => throughput(createGPT(gptConfig('tiny', V)), 16, 12)],
  ['throughputSmallB8', () => throughput(createGPT(gptConfig('small', V)), 8, 8)],
] as const) {
  const t0 = performance.now();
  try {
    const r = await f();
    report[name] = { ok: true, ms: Math.round(performance.now() - t0), ...r };
    console.log('OK  ', name, JSON.stringify(r));
  } catch (err) {
    report[name] = { ok: false, error: String((err as Error)?.stack ?? err) };
    console.log('FAIL', name, String(err));
  }
}
const dir = process.env.OUT ?? RESULTS_DIR;
mkdirSync(dir, { recursive: true });
const gpu = info.name === 'webgpu' && info.adapter !== undefined && !info.adapter.software;
const file = join(dir, gpu ? `engine-${machineTag(info.adapter)}.json` : `engine-${info.name}-${machineTag()}.json`);
writeFileSync(file, JSON.stringify(report, null, 2) + '\n');
console.log('wrote', file);
