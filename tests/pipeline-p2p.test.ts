// Pipeline stages in real processes: the toy model (wte tied between the first and the last
// block) cut into 2 and 3 stages, one rank each, one step of M micro-batches in GPipe and in 1F1B
// order, activations and their gradients crossing between the ranks by send/recv (runStageStep).
// Every stage's gradients, with the tied embedding's summed over the first and last stage's
// subgroup, equal the blockwise engine's on one process over the same micro-batches, and so does
// the loss. Each stage's peak of live micro-batches (what it held between F and B) is M for GPipe
// and P − s for 1F1B.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { initNamedBackend, registerAllGradients, tf } from '@zeroring/backend';
import { BlockwiseEngine, uniqueParams } from '@zeroring/train';
import { launch } from '@zeroring/comm';
import { Collect } from './fixtures/launch/helpers.ts';
import { repoRoot } from './fixtures/cli.ts';
import { MapSource, SumSink } from '../packages/train/test/sum-grads.ts';
import { createToyModel, toyBatch } from '../packages/train/test/toy-model.ts';

const worker = fileURLToPath(new URL('./fixtures/pipeline/stage-worker.ts', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'zr-pipe-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const CFG = { vocab: 13, seqLen: 6, dim: 8, layers: 3 };
const M = 4;
const B = 2;

await registerAllGradients();
await initNamedBackend('cpu', 'pipeline test reference');

/** The whole model on one process: the same micro-batches, gradients summed with scale 1/M. */
async function reference(): Promise<{ grads: Map<string, Float32Array>; loss: number }> {
  const model = createToyModel(CFG);
  const values = model.initParams(5);
  const tensors = new Map(uniqueParams(model).map((p) => [p.name, tf.tensor(values.get(p.name)!, p.shape)]));
  const source = new MapSource(model, tensors);
  const sink = new SumSink();
  const engine = new BlockwiseEngine(model);
  let loss = 0;
  for (let m = 0; m < M; m++) {
    const b = toyBatch(40 + m, B, CFG.seqLen, CFG.vocab);
    loss += (await engine.forwardBackward(b.input, b.targets, source, sink, { gradScale: 1 / M })) / M;
  }
  return { grads: sink.grads, loss };
}

interface StageResult {
  grads: Record<string, number[]>;
  peakLive: number;
  loss?: number;
}

async function runPipeline(cuts: number[], schedule: 'gpipe' | '1f1b'): Promise<StageResult[]> {
  const P = cuts.length - 1;
  const out = join(dir, `${P}-${schedule}-{rank}.json`);
  const stderr = new Collect();
  const result = await launch({
    nprocPerNode: P,
    script: worker,
    args: [JSON.stringify({ cuts, micro: M, batch: B, schedule, out })],
    cwd: repoRoot,
    stdout: new Collect(),
    stderr,
    forwardSignals: false,
  });
  expect(result.exitCode, stderr.text).toBe(0);
  return Array.from({ length: P }, (_, s) => JSON.parse(readFileSync(out.replace('{rank}', String(s)), 'utf8')));
}

describe('pipeline stages over send/recv (real processes)', () => {
  for (const cuts of [
    [0, 2, 5],
    [0, 1, 3, 5],
  ]) {
    for (const schedule of ['gpipe', '1f1b'] as const) {
      const P = cuts.length - 1;
      const what = 'the gradients and loss of one process; live activations as the schedule keeps them';
      it(`${P} stages, ${schedule}: ${what}`, async () => {
        const [ref, stages] = await Promise.all([reference(), runPipeline(cuts, schedule)]);
        const got = new Map<string, number[]>();
        for (const [s, r] of stages.entries()) {
          for (const [name, g] of Object.entries(r.grads)) {
            // The tied embedding is held by the first and the last stage, each with the summed gradient.
            if (got.has(name)) expect(name === 'wte' && s === P - 1, `${name} on stage ${s}`).toBe(true);
            got.set(name, g);
          }
        }
        expect([...got.keys()].sort()).toEqual([...ref.grads.keys()].sort());
        for (const [name, want] of ref.grads) {
          const scale = Math.max(...want.map(Math.abs));
          const worst = Math.max(...got.get(name)!.map((x, i) => Math.abs(x - want[i]!)));
          expect(worst / scale, name).toBeLessThan(1e-5);
        }
        expect(Math.abs(stages[P - 1]!.loss! - ref.loss)).toBeLessThan(1e-5 * ref.loss);
        const peaks = stages.map((r) => r.peakLive);
        expect(peaks).toEqual(stages.map((_, s) => (schedule === 'gpipe' ? M : Math.min(P - s, M))));
      }, 120_000);
    }
  }
});
