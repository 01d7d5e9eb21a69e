// The fused flat AdamW on WebGPU (WGSL norm + update, strategies/optim-flat.ts) against the
// tfjs-ops AdamW of optim/adamw.ts on the cpu backend: random parameters, moments and gradients of
// awkward sizes, decaying and not, several steps with gradient scaling and clipping active and
// inactive; a non-finite gradient gated on the device; and the training step through the real
// trainer, engine, strategy and non-finite guard on WebGPU reading back once per step, counted by
// the device's own counters, so a read-back that creeps back into the step fails here.
//
// Without a WebGPU adapter these tests are skipped with the reason printed; under CI they fail.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { initBackend } from '@zeroring/backend';
import type { BlockModel, ParamSpec } from '../src/model.ts';
import { MemoryTracker } from '../src/memory.ts';
import { NonFiniteGradientError, NonFiniteGuard } from '../src/nonfinite.ts';
import { DEFAULT_ADAMW } from '../src/optim/adamw.ts';
import { StepReadout } from '../src/step-readout.ts';
import { DeviceGrads } from '../src/strategies/grads-device.ts';
import { LocalStrategy } from '../src/strategies/local.ts';
import { FlatAdamW } from '../src/strategies/optim-flat.ts';
import { DeviceShardAdamW, type ShardOptimizer } from '../src/strategies/optim-shard.ts';
import { FlatShardAdamW } from '../src/strategies/optim-shard-flat.ts';
import { ReplicatedAdamW, type ParamState, type ReplicatedOptimizer } from '../src/strategies/optim-replicated.ts';
import { ReplicatedParams } from '../src/strategies/params-replicated.ts';
import type { FinishStepOptions } from '../src/strategy.ts';
import { train, type TrainConfig, type WindowData } from '../src/trainer.ts';
import { createToyModel, rand, batchAtTokens } from './toy-model.ts';
import { webgpuSkipReason } from '../../../tests/fixtures/webgpu.ts';

const skipReason = await webgpuSkipReason('flat AdamW webgpu tests');
const onWebGPU = it.skipIf(skipReason !== undefined);

// Sizes that are not multiples of the workgroup (64) or of each other; 2-D ones decay.
const SPECS: ParamSpec[] = [
  { name: 'a.w', shape: [37, 13] },
  { name: 'a.b', shape: [129] },
  { name: 'b.w', shape: [3, 5, 7] },
  { name: 'b.g', shape: [1] },
  { name: 'c.w', shape: [65, 67] },
  { name: 'c.b', shape: [63] },
];
const MODEL: BlockModel = {
  blocks: [{ name: 'all', params: SPECS, forward: (_p, x) => x }],
  loss: () => tf.scalar(0),
  initParams: () => new Map(),
};
const size = (s: ParamSpec): number => s.shape.reduce((a, b) => a * b, 1);

function randomArray(n: number, seed: number, scale: number, positive = false): Float32Array {
  const r = rand(seed);
  return Float32Array.from({ length: n }, () => (positive ? r() * scale : (r() - 0.5) * 2 * scale));
}

function startState(): Map<string, ParamState> {
  const out = new Map<string, ParamState>();
  SPECS.forEach((s, k) => {
    const n = size(s);
    out.set(s.name, {
      param: randomArray(n, 100 + k, 1),
      m: randomArray(n, 200 + k, 0.01),
      v: randomArray(n, 300 + k, 1e-4, true),
    });
  });
  return out;
}

/**
 * Step options per step: scaled or not, clipping active (far below the norm, about 8, and just
 * below it), inactive, or off.
 */
const STEPS: Array<Omit<FinishStepOptions, 'step'>> = [
  { lr: 3e-3, gradScale: 0.5, maxGradNorm: 0.05 },
  { lr: 1e-2, maxGradNorm: 1e6 },
  { lr: 2e-3, gradScale: 0.25 },
  { lr: 5e-3, maxGradNorm: 7 },
];

interface Run {
  state: Map<string, ParamState>;
  norms: Array<number | undefined>;
  t: number;
}

/** The optimizer on `backend` from startState() through STEPS with seeded gradients. */
async function runSteps(backend: 'cpu' | 'webgpu'): Promise<Run> {
  await initBackend(backend);
  const mem = new MemoryTracker();
  const init = startState();
  const params = ReplicatedParams.fromValues(MODEL, new Map([...init].map(([k, v]) => [k, v.param])), mem);
  const opt: ReplicatedOptimizer =
    backend === 'webgpu'
      ? new FlatAdamW(params, DEFAULT_ADAMW, mem)
      : new ReplicatedAdamW(params.specs, DEFAULT_ADAMW, mem);
  opt.restore(params, init, 7);
  const grads = new DeviceGrads(mem);
  const norms: Array<number | undefined> = [];
  for (const [step, o] of STEPS.entries()) {
    SPECS.forEach((s, k) => grads.add(s.name, tf.tensor(randomArray(size(s), 1000 * step + k, 0.2), s.shape)));
    const readout = new StepReadout();
    const { later } = await opt.step(params, grads, { ...o, step }, readout);
    await readout.flush();
    norms.push((await later).gradNorm);
  }
  const state = await opt.snapshot(params);
  // The tensors the model reads are the parameters of the state.
  for (const s of SPECS) expect(await params.get(s.name).data()).toEqual(state.get(s.name)!.param);
  const t = opt.t;
  opt.dispose();
  params.dispose();
  return { state, norms, t };
}

function worstError(a: Float32Array, b: Float32Array, atol: number, rtol: number): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(a[i]) || !Number.isFinite(b[i])) return Infinity;
    worst = Math.max(worst, Math.abs(a[i] - b[i]) / (atol + rtol * Math.abs(b[i])));
  }
  return worst;
}

/** A learnable token stream for the trainer. */
function toyData(V: number, n: number): WindowData {
  const r = rand(3);
  const tokens = Int32Array.from({ length: n }, (_, i) => (r() < 0.05 ? Math.floor(r() * V) : (i * 3) % V));
  return {
    windowStarts: (_split, T) => Int32Array.from({ length: n - T - 1 }, (_, i) => i),
    batchAt: batchAtTokens(tokens),
  };
}

/** A ZeRO shard's optimizer on `backend`: a shard of awkward length mixing decay ranges. */
async function runShard(backend: 'cpu' | 'webgpu'): Promise<{ p: Float32Array; m: Float32Array; v: Float32Array }> {
  await initBackend(backend);
  const L = 1000 + 37;
  const ranges: Array<[number, number]> = [
    [0, 31],
    [33, 500],
    [501, 502],
    [700, 1037],
  ];
  const opt: ShardOptimizer =
    backend === 'webgpu'
      ? new FlatShardAdamW(L, ranges, DEFAULT_ADAMW)
      : new DeviceShardAdamW(L, ranges, DEFAULT_ADAMW);
  opt.loadMoments(randomArray(L, 1, 0.01), randomArray(L, 2, 1e-4, true));
  const p = randomArray(L, 3, 1);
  for (let t = 5; t < 9; t++) await opt.step(p, randomArray(L, 10 + t, 0.2), 1e-2 * (t - 4), t);
  const { m, v } = await opt.moments();
  await opt.dispose();
  return { p, m, v };
}

describe('flat AdamW on WebGPU', () => {
  onWebGPU('a ZeRO shard updated by the masked kernel matches the tfjs-ops shard optimizer on cpu', async () => {
    const ref = await runShard('cpu');
    const got = await runShard('webgpu');
    for (const k of ['p', 'm', 'v'] as const) {
      expect(worstError(got[k], ref[k], k === 'v' ? 1e-9 : 1e-7, 1e-5), k).toBeLessThanOrEqual(1);
    }
  });

  onWebGPU('matches optim/adamw.ts on cpu over several steps (decay, scaling, clipping on and off)', async () => {
    const ref = await runSteps('cpu');
    const got = await runSteps('webgpu');
    expect(got.t).toBe(ref.t);
    for (const s of SPECS) {
      for (const k of ['param', 'm', 'v'] as const) {
        const err = worstError(got.state.get(s.name)![k], ref.state.get(s.name)![k], k === 'v' ? 1e-9 : 1e-7, 1e-5);
        expect(err, `${k}/${s.name}`).toBeLessThanOrEqual(1);
      }
    }
    ref.norms.forEach((n, i) => {
      if (n === undefined) expect(got.norms[i]).toBeUndefined();
      else expect(Math.abs(got.norms[i]! - n) / n, `grad norm of step ${i}`).toBeLessThan(1e-5);
    });
    // Clipping active in the first and last step (coefficient far below 1, and close to it),
    // inactive in the second.
    expect(ref.norms[0]!).toBeGreaterThan(0.05);
    expect(ref.norms[1]!).toBeLessThan(1e6);
    expect(7 / ref.norms[3]!).toBeGreaterThan(0.6);
    expect(7 / ref.norms[3]!).toBeLessThan(1);
  });

  onWebGPU('a gated non-finite gradient leaves parameters, moments and the step count as they were', async () => {
    await initBackend('webgpu');
    const mem = new MemoryTracker();
    const init = startState();
    const params = ReplicatedParams.fromValues(MODEL, new Map([...init].map(([k, v]) => [k, v.param])), mem);
    const opt = new FlatAdamW(params, DEFAULT_ADAMW, mem);
    opt.restore(params, init, 3);
    const grads = new DeviceGrads(mem);
    SPECS.forEach((s, k) => {
      const g = randomArray(size(s), k, 0.1);
      if (k === 2) g[5] = Number.POSITIVE_INFINITY;
      grads.add(s.name, tf.tensor(g, s.shape));
    });
    const readout = new StepReadout();
    const { later } = await opt.step(
      params,
      grads,
      { lr: 1e-2, step: 0, maxGradNorm: 1, gateNonFinite: true },
      readout,
    );
    await readout.flush();
    expect((await later).skipped).toBe(true);
    expect(opt.t).toBe(3);
    const after = await opt.snapshot();
    for (const s of SPECS) expect(after.get(s.name)).toEqual(init.get(s.name));
    opt.dispose();
    params.dispose();
  });

  onWebGPU('the guard skips, or fails, a poisoned step gated on the device', async () => {
    await initBackend('webgpu');
    const V = 11;
    const T = 8;
    const model = createToyModel({ vocab: V, seqLen: T, dim: 16, layers: 1 });
    const config: TrainConfig = {
      steps: 3,
      batchSize: 2,
      blockSize: T,
      lr: 1e-2,
      seed: 1,
      evalInterval: 0,
      evalBatches: 0,
    };
    const skipping = new NonFiniteGuard(new LocalStrategy(), { skip: true, poisonAtLocalStep: 1 });
    const summary = await train({ model, data: toyData(V, 500), config, strategy: skipping });
    expect(skipping.skipped).toEqual([1]);
    expect(Number.isFinite(summary.finalLoss)).toBe(true);
    // Two updates of three steps: the skipped one left the step count where it was.
    expect((await skipping.saveState()).meta.t).toBe(2);
    await skipping.dispose();
    const failing = new NonFiniteGuard(new LocalStrategy(), { skip: false, poisonAtLocalStep: 1 });
    await expect(train({ model, data: toyData(V, 500), config, strategy: failing })).rejects.toThrow(
      NonFiniteGradientError,
    );
    await failing.dispose();
  });

  onWebGPU('a guarded training step reads back from the device once', async () => {
    await initBackend('webgpu');
    const dir = mkdtempSync(join(tmpdir(), 'zr-flat-'));
    try {
      const V = 11;
      const T = 8;
      const config: TrainConfig = {
        steps: 3,
        batchSize: 4,
        blockSize: T,
        lr: 1e-2,
        seed: 1,
        evalInterval: 0,
        evalBatches: 0,
        countGpuWork: true,
      };
      const strategy = new NonFiniteGuard(new LocalStrategy(), { skip: false });
      const model = createToyModel({ vocab: V, seqLen: T, dim: 16, layers: 2 });
      const summary = await train({ model, data: toyData(V, 500), config, strategy, outDir: dir });
      await strategy.dispose();
      const lines = readFileSync(join(dir, 'metrics.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l));
      expect(lines).toHaveLength(3);
      for (const line of lines) {
        expect(line.gpu.readbacks, `read-backs of step ${line.step}`).toBe(1);
        expect(Number.isFinite(line.loss) && Number.isFinite(line.gradNorm)).toBe(true);
      }
      expect(Number.isFinite(summary.finalLoss)).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
