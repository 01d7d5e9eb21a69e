// `zeroring train --nproc 2 --strategy ddp` as a user runs it: the real CLI starts the launcher,
// which starts two workers that train the tiny GPT with DDPStrategy. Checks the single-process
// features (progress line with comm share, validation, --out files, sample), that rank 1 stays
// quiet, that 2 ranks × batch 2 reach the parameters of 1 process × batch 4, and that an
// interrupted DDP run resumes from its per-rank checkpoints to the same parameters; and that
// --batch-split gives the even split's parameters.
import { afterAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from './fixtures/once.ts';
import { runCli } from './fixtures/cli.ts';

const root = mkdtempSync(join(tmpdir(), 'zr-ddp-cli-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const common = (
  '--backend wasm --steps 3 --eval-interval 2 --eval-batches 2 ' + '--sample-tokens 20 --seed 7 --warmup-steps 1'
).split(' ');
const summaryOf = (dir: string) => JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8'));

describe('zeroring train --nproc 2 --strategy ddp', () => {
  // The two reference runs, each trained once by the first test that needs it.
  const ddpOut = join(root, 'ddp');
  const ddpRun = once(() =>
    runCli(['train', '--nproc', '2', '--strategy', 'ddp', '--batch-size', '2', '--out', ddpOut, ...common]),
  );
  const oneOut = join(root, 'one');
  const oneRun = once(() => runCli(['train', '--nproc', '1', '--batch-size', '4', '--out', oneOut, ...common]));

  it('trains with 2 workers: progress on rank 0, --out files, per-rank checkpoints, sample', async () => {
    const r = await ddpRun();
    expect(r.code, r.output).toBe(0);
    const metrics = readFileSync(join(ddpOut, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(metrics.map((m) => m.step)).toEqual([1, 2, 3]);
    for (const m of metrics) {
      // Every rank waits each step at least for the non-finite flag's all-reduce.
      expect(m.commMs).toBeGreaterThan(0);
      expect(m.commExposedMs).toBeGreaterThan(0);
      // The least of the ranks' waits, never above their mean.
      expect(m.commExposedMs).toBeLessThanOrEqual(m.commMs + 1e-9);
      expect(m.tokensPerSec).toBeGreaterThan(0);
      expect(m.memory.gathered.host).toBeGreaterThan(0); // the flat bucket buffers
    }
    // Each step waits at least for the 1.6 MB gradient all-reduce: a wait hidden behind another
    // collective (e.g. the non-finite flag's) must still be counted as communication.
    const meanCommMs = metrics.reduce((a, m) => a + m.commMs, 0) / metrics.length;
    expect(meanCommMs).toBeGreaterThan(0.3);
    const s = summaryOf(ddpOut);
    expect(s).toMatchObject({ steps: 3, strategy: 'ddp', worldSize: 2, config: { backend: 'wasm', nproc: 2 } });
    expect(s.memory.modelStateBytes).toBe(16 * s.paramCount);
    expect(s.finalValLoss).toBeLessThan(s.initialValLoss);
    for (const f of ['shard-rank0.bin', 'shard-rank1.bin', 'model.bin', 'manifest.json'])
      expect(existsSync(join(ddpOut, 'checkpoints', 'step-00000003', f)), f).toBe(true);
    expect(r.output).toMatch(/\[rank 0\] .*comm=\d+(\.\d)?% straggler=\d+(\.\d)?%/);
    expect(r.output).toMatch(/\[rank 0\] .*val loss/);
    expect(r.output).toContain('[rank 0] --- sample ---');
    // Rank 1 logs its routine lines at debug: none at the default level.
    expect(r.output).not.toMatch(/\[rank 1\] .*"level":30/);
  }, 300_000);

  it('2 ranks × batch 2 end where 1 process × batch 4 ends', async () => {
    const r = await oneRun();
    expect(r.code, r.output).toBe(0);
    const ddp = await ddpRun();
    expect(ddp.code, ddp.output).toBe(0);
    const one = summaryOf(oneOut);
    const two = summaryOf(ddpOut);
    expect(one.strategy).toBe('local');
    expect(Math.abs(two.paramChecksum - one.paramChecksum) / one.paramChecksum).toBeLessThan(1e-5);
  }, 300_000);

  it('--batch-split 1,3 reads the same 4 windows per step: the parameters of the even split', async () => {
    const out = join(root, 'split');
    const r = await runCli([
      'train',
      '--nproc',
      '2',
      '--batch-size',
      '2',
      '--batch-split',
      '1,3',
      '--out',
      out,
      ...common,
    ]);
    expect(r.code, r.output).toBe(0);
    const metrics = readFileSync(join(out, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(metrics.map((m) => m.batchSplit)).toEqual([
      [1, 3],
      [1, 3],
      [1, 3],
    ]);
    const ref = await oneRun();
    expect(ref.code, ref.output).toBe(0);
    const one = summaryOf(oneOut);
    expect(Math.abs(summaryOf(out).paramChecksum - one.paramChecksum) / one.paramChecksum).toBeLessThan(1e-5);
    const bad = await runCli(['train', '--nproc', '2', '--batch-size', '2', '--batch-split', '2,3', ...common]);
    expect(bad.code).not.toBe(0);
    expect(bad.output).toMatch(/batch split \[2, 3\] is invalid, expected 2 integers >= 1 summing to 4/);
  }, 300_000);

  it('an interrupted DDP run resumes to the same parameters', async () => {
    const out = join(root, 'resume');
    const a = await runCli([
      'train',
      '--nproc',
      '2',
      '--batch-size',
      '2',
      '--out',
      out,
      '--stop-after',
      '2',
      ...common,
    ]);
    expect(a.code, a.output).toBe(0);
    const b = await runCli(['train', '--nproc', '2', '--batch-size', '2', '--out', out, '--resume', ...common]);
    expect(b.code, b.output).toBe(0);
    const s = summaryOf(out);
    expect(s).toMatchObject({ steps: 3, resumedFrom: 2, strategy: 'ddp' });
    const whole = await ddpRun();
    expect(whole.code, whole.output).toBe(0);
    expect(s.paramChecksum).toBe(summaryOf(ddpOut).paramChecksum);
  }, 400_000);
});
