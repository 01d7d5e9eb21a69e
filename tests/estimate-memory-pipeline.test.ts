// `zeroring estimate-memory --pp P --micro-batches M` through the built CLI: the stage cut, the
// per-stage model state and peak activations (1F1B: min(P - s, M) micro-batches live; GPipe: M),
// the bubble and the timeline chart, and its argument errors.
import { describe, expect, it } from 'vitest';
import { runCli } from './fixtures/cli.ts';

interface Stage {
  stage: number;
  blocks: string[];
  params: number;
  modelStateBytes: number;
  peakLiveMicroBatches: number;
  activationBytesPerWindow: number;
  activationBytes: number;
  totalBytes: number;
}
interface Out {
  params: number;
  model: { name: string; vocabSize: number; config: { blockSize: number; nEmbd: number; vocabSize: number } };
  pipeline: { stages: number; microBatches: number; schedule: string; batchSize: number; bubble: number };
}

const run = (...args: string[]) => runCli(['estimate-memory', ...args], { timeoutMs: 90_000 });

describe('zeroring estimate-memory --pp', () => {
  it('cuts gpt2 into stages and prices each one: 1F1B keeps min(P - s, M) micro-batches, GPipe M', async () => {
    const common = ['--model', 'gpt2', '--vocab-size', '89', '--pp', '4', '--micro-batches', '6', '--batch-size', '2'];
    const [one, gp] = await Promise.all([run(...common, '--json'), run(...common, '--schedule', 'gpipe', '--json')]);
    expect(one.code, one.stderr).toBe(0);
    expect(gp.code, gp.stderr).toBe(0);
    const a = JSON.parse(one.stdout) as Out & { pipeline: { perStage: Stage[] } };
    const g = JSON.parse(gp.stdout) as Out & { pipeline: { perStage: Stage[] } };
    expect(a.pipeline).toMatchObject({ stages: 4, microBatches: 6, schedule: '1f1b', batchSize: 2 });
    expect(a.pipeline.bubble).toBeCloseTo(3 / 9, 12);
    expect(g.pipeline.bubble).toBeCloseTo(3 / 9, 12);
    const stages = a.pipeline.perStage;
    // Contiguous, every block once: embed, h0..h11, head.
    expect(stages.flatMap((s) => s.blocks)).toEqual([
      'embed',
      ...Array.from({ length: 12 }, (_, i) => `h${i}`),
      'head',
    ]);
    // Balanced by parameters: 12 equal blocks of 7.08M plus the embeddings and the tied head.
    const params = stages.map((s) => s.params);
    expect(Math.max(...params) / Math.min(...params)).toBeLessThan(1.1);
    // The tied wte (V x C) is counted on the first and the last stage.
    expect(params.reduce((x, y) => x + y, 0)).toBe(a.params + 89 * 768);
    const { blockSize: t, nEmbd: c } = a.model.config;
    for (const [s, st] of stages.entries()) {
      expect(st.modelStateBytes).toBe(16 * st.params);
      expect(st.peakLiveMicroBatches).toBe(Math.min(4 - s, 6));
      expect(g.pipeline.perStage[s]!.peakLiveMicroBatches).toBe(6);
      const layers = st.blocks.filter((b) => /^h\d+$/.test(b)).length;
      const head = st.blocks.includes('head') ? 4 * t * (4 * 89 + 3 * c) : 0;
      expect(st.activationBytesPerWindow).toBe(4 * t * 18 * c * layers + head);
      expect(st.activationBytes).toBe(st.peakLiveMicroBatches * 2 * st.activationBytesPerWindow);
      expect(st.totalBytes).toBe(st.modelStateBytes + st.activationBytes);
    }
  });

  it('prints the stage table and one timeline lane per stage', async () => {
    const r = await run('--model', 'tiny', '--vocab-size', '65', '--pp', '2', '--micro-batches', '3');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/2 stage\(s\), 3 micro-batch\(es\) of 1 window\(s\), 1f1b/);
    expect(r.stdout).toMatch(/^ {2}0 {6}embed\.\.h0 +\S+K +\S+ [KM]iB +2 /m);
    expect(r.stdout).toMatch(/^ {2}1 {6}h1\.\.head +\S+K +\S+ [KM]iB +1 /m);
    expect(r.stdout).toMatch(/bubble 25\.0% = \(P-1\)\/\(M\+P-1\)/);
    const lanes = r.stdout.split('\n').filter((l) => l.startsWith('stage '));
    expect(lanes).toEqual([
      'stage 0 [F0][F1]........[B0    ][F2][B1    ]....[B2    ]',
      'stage 1 ....[F0][B0    ][F1][B1    ][F2][B2    ]........',
    ]);
  });

  it('fails with one clear line on bad pipeline arguments', async () => {
    const runs = await Promise.all([
      run('--model', 'tiny', '--pp', '2'),
      run('--params', '1M', '--pp', '2', '--micro-batches', '2'),
      run('--model', 'tiny', '--pp', '5', '--micro-batches', '2'),
      run('--model', 'tiny', '--pp', '2', '--micro-batches', '2', '--nproc', '4'),
      run('--model', 'tiny', '--pp', '2', '--micro-batches', '2', '--schedule', 'zigzag'),
      run('--model', 'tiny', '--micro-batches', '2', '--nproc', '1'),
    ]);
    for (const r of runs) expect(r.code).not.toBe(0);
    expect(runs[0]!.stderr).toMatch(/--pp needs --micro-batches M/);
    expect(runs[1]!.stderr).toMatch(/'--pp <P>' cannot be used with option '--params <P>'/);
    expect(runs[2]!.stderr).toMatch(/--pp 5, expected at most 4 \(the model's blocks\)/);
    expect(runs[3]!.stderr).toMatch(/--nproc 4 with --pp 2, expected --nproc 2/);
    expect(runs[4]!.stderr).toMatch(/zigzag/);
    expect(runs[5]!.stderr).toMatch(/--micro-batches needs --pp P/);
  });
});
