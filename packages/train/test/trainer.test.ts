// The trainer on the toy block model: it learns, writes the DESIGN.md files, and a run
// interrupted and resumed from its checkpoint ends bit-identical to the uninterrupted run.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '@zeroring/backend';
import { initProcessGroup } from '@zeroring/comm';
import { freePort } from '@zeroring/comm';
import { train, type WindowData, type TrainConfig, type TrainSummary } from '../src/trainer.ts';
import { LocalStrategy } from '../src/strategies/local.ts';
import { stepDirName } from '../src/checkpoint.ts';
import type { TrainEvent } from '../src/events.ts';
import { createToyModel, rand, batchAtTokens } from './toy-model.ts';

/** A learnable token stream: a fixed cycle with occasional noise, split 90/10 into train/val. */
function toyData(V: number, n: number): WindowData {
  const r = rand(11);
  const cycle = [0, 3, 1, 4, 1, 5, 2, 6];
  const tokens = Int32Array.from({ length: n }, (_, i) =>
    r() < 0.05 ? Math.floor(r() * V) : cycle[i % cycle.length] % V,
  );
  const cut = Math.floor(n * 0.9);
  return {
    windowStarts(split, T) {
      const [a, b] = split === 'train' ? [0, cut] : [cut, n];
      return Int32Array.from({ length: b - a - T }, (_, i) => a + i);
    },
    batchAt: batchAtTokens(tokens),
  };
}

const V = 7;
const T = 8;
const model = createToyModel({ vocab: V, seqLen: T, dim: 16, layers: 2 });
const data = toyData(V, 3000);
const config: TrainConfig = {
  steps: 8,
  batchSize: 4,
  blockSize: T,
  lr: 1e-2,
  warmupSteps: 2,
  seed: 5,
  evalInterval: 4,
  evalBatches: 2,
};

const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'zr-train-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function run(
  outDir: string | undefined,
  extra: { resume?: boolean; stopAfterSteps?: number; steps?: number } = {},
) {
  const strategy = new LocalStrategy();
  const events: TrainEvent[] = [];
  const summary = await train({
    model,
    strategy,
    data,
    outDir,
    config: { ...config, steps: extra.steps ?? config.steps },
    resume: extra.resume,
    stopAfterSteps: extra.stopAfterSteps,
    onEvent: (e) => events.push(e),
    sample: () => 'sample text',
  });
  const params = await strategy.fullParams();
  await strategy.dispose();
  return { summary, params, events };
}

const lines = (dir: string) =>
  readFileSync(join(dir, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);

describe('train()', () => {
  beforeAll(async () => {
    await initBackend('cpu');
  });

  it('lowers training and validation loss and keeps tensor count flat', async () => {
    const before = tf.memory().numTensors;
    const { summary } = await run(undefined, { steps: 40 });
    expect(summary.initialValLoss).toBeGreaterThan(1.5);
    expect(summary.finalValLoss!).toBeLessThan(summary.initialValLoss! * 0.6);
    expect(summary.finalLoss).toBeLessThan(summary.initialValLoss! * 0.6);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('writes metrics.jsonl, summary.json and checkpoints with the DESIGN names', async () => {
    const out = tmp();
    const { summary, events, params } = await run(out);
    const m = lines(out);
    expect(m).toHaveLength(8);
    for (const key of ['step', 'loss', 'tokensPerSec', 'computeMs', 'commMs', 'memory'])
      expect(m[0]).toHaveProperty(key);
    expect(m[3]).toHaveProperty('valLoss');
    const mem = m[0].memory as Record<string, { device: number; host: number }>;
    expect(mem.params.device).toBeGreaterThan(0);
    expect(mem.optimizer.device).toBe(2 * mem.params.device);
    const s = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')) as TrainSummary;
    for (const key of ['config', 'steps', 'paramCount', 'finalLoss', 'finalValLoss', 'paramChecksum'])
      expect(s).toHaveProperty(key);
    expect(s.memory.modelStateBytes).toBe(16 * s.paramCount);
    let sq = 0;
    for (const a of params.values()) for (const v of a) sq += v * v;
    expect(s.paramChecksum).toBeCloseTo(sq, 6);
    expect(summary.sample).toBe('sample text');
    expect(existsSync(join(out, 'checkpoints', stepDirName(8), 'manifest.json'))).toBe(true);
    expect(events.map((e) => e.type)).toEqual([
      'config',
      'val',
      ...Array(3).fill('step'),
      'step',
      'val',
      ...Array(3).fill('step'),
      'step',
      'val',
      'sample',
      'done',
    ]);
  });

  it('resumes from a checkpoint bit-identically', async () => {
    const full = await run(tmp());
    const out = tmp();
    const first = await run(out, { stopAfterSteps: 3 });
    expect(first.summary.steps).toBe(3);
    const resumed = await run(out, { resume: true });
    expect(resumed.summary.resumedFrom).toBe(3);
    for (const [name, a] of full.params) {
      expect(Buffer.from(resumed.params.get(name)!.buffer).equals(Buffer.from(a.buffer)), name).toBe(true);
    }
    expect(resumed.summary.paramChecksum).toBe(full.summary.paramChecksum);
    expect(resumed.summary.finalLoss).toBe(full.summary.finalLoss);
    // The resumed run appended steps 4..8 to the same metrics file.
    expect(lines(out).map((l) => l.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  });

  it('2 accumulated micro-batches of 4 equal one batch of 8 (grad norms; params within 1e-5 of scale)', async () => {
    const once = async (batchSize: number, gradAccumSteps: number) => {
      const strategy = new LocalStrategy();
      const outDir = tmp();
      const summary = await train({
        model,
        strategy,
        data,
        outDir,
        config: { ...config, steps: 4, evalInterval: 0, batchSize, gradAccumSteps },
      });
      const params = await strategy.fullParams();
      await strategy.dispose();
      return { summary, params, gradNorms: lines(outDir).map((l) => l.gradNorm as number) };
    };
    const a = await once(8, 1);
    const b = await once(4, 2);
    let worst = 0;
    for (const [name, x] of a.params) {
      const y = b.params.get(name)!;
      let scale = 0;
      for (const v of x) scale = Math.max(scale, Math.abs(v));
      for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i] - y[i]) / scale);
    }
    expect(worst).toBeLessThan(1e-5);
    // Adam hides a wrong gradient scale in the parameters; the pre-clip norm does not.
    a.gradNorms.forEach((g, i) => expect(Math.abs(g - b.gradNorms[i]) / g).toBeLessThan(1e-5));
    expect(Math.abs(a.summary.finalLoss - b.summary.finalLoss)).toBeLessThan(1e-4);
  });

  it('warns when a resumed run changes the schedule', async () => {
    const out = tmp();
    await run(out, { stopAfterSteps: 2 });
    const warnings: string[] = [];
    const strategy = new LocalStrategy();
    await train({
      model,
      strategy,
      data,
      outDir: out,
      resume: true,
      config: { ...config, lr: 2e-2 },
      warn: (m) => warnings.push(m),
    });
    await strategy.dispose();
    expect(warnings.join('\n')).toMatch(/with lr 0\.02 \(checkpoint has 0\.01\)/);
  });

  it('two ranks over a real process group: one metrics writer, per-rank splits, shared val loss', async () => {
    const masterPort = await freePort();
    const pgOpts = { worldSize: 2, masterAddr: '127.0.0.1', masterPort, token: 'trainer-unit', timeoutMs: 60_000 };
    const pgs = await Promise.all([initProcessGroup({ ...pgOpts, rank: 0 }), initProcessGroup({ ...pgOpts, rank: 1 })]);
    const out = tmp();
    const events: TrainEvent[][] = [[], []];
    try {
      // Each rank trains its own LocalStrategy (no gradient sync): this checks the trainer's own
      // cross-rank plumbing; evalBatches 3 over 2 ranks is uneven on purpose.
      const results = await Promise.all(
        pgs.map(async (pg, r) => {
          const strategy = new LocalStrategy();
          const summary = await train({
            model,
            strategy,
            data,
            outDir: out,
            comm: pg,
            config: { ...config, steps: 4, evalBatches: 3 },
            onEvent: (e) => events[r].push(e),
          });
          await strategy.dispose();
          return summary;
        }),
      );
      expect(results[0].finalValLoss).toBe(results[1].finalValLoss);
      expect(results[0].worldSize).toBe(2);
      expect(lines(out).map((l) => l.step)).toEqual([1, 2, 3, 4]);
      expect(events[1]).toEqual([]); // only rank 0 emits
      const step = events[0].find((e) => e.type === 'step');
      expect(step && step.type === 'step' && step.ranks?.map((x) => x.rank)).toEqual([0, 1]);
      // The exposed part of the comm wait is the least any rank waited, in the event and the file.
      for (const e of events[0])
        if (e.type === 'step') expect(e.commExposedMs).toBe(Math.min(...e.ranks!.map((x) => x.commMs)));
      for (const l of lines(out)) expect(l).toHaveProperty('commExposedMs');
      // The metrics all-reduce is completed a step late (off the critical path), yet every step
      // still gets its event, in order, with its validation right after it, and the last one
      // lands before the summary.
      expect(events[0].map((e) => (e.type === 'step' || e.type === 'val' ? `${e.type}${e.step}` : e.type))).toEqual([
        'config',
        'val0',
        'step1',
        'step2',
        'step3',
        'step4',
        'val4',
        'done',
      ]);
      expect(results[0].finalLoss).toBe(results[1].finalLoss);
      expect(lines(out).at(-1)).toMatchObject({
        step: 4,
        loss: results[0].finalLoss,
        valLoss: results[0].finalValLoss,
      });
      expect(existsSync(join(out, 'checkpoints', stepDirName(4), 'shard-rank1.bin'))).toBe(true);
    } finally {
      await Promise.all(pgs.map((pg) => pg.destroy()));
    }
  });
});
