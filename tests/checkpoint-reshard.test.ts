// Resharding on load through the real CLI: a run trained 3 steps at N ranks under one strategy
// and resumed at M ranks under another (--resume, the same flags as the first leg, so the global
// batch of 12 windows is re-split: uneven shares or accumulation where it does not divide) ends
// where an uninterrupted one-process run with the same global batch ends. The pairs cover every
// strategy on both sides and N < M, N > M and N = M. A consolidated file resumes at 1 and 3 ranks.
//
// Tolerance: the runs reduce the same windows' gradients in another order (per-rank partial means
// summed by a ring, or accumulated micro-batches, against one batch mean), which differs by float
// rounding each step, and AdamW's normalised update carries it into the parameters. Uninterrupted
// runs show how far that goes here: after these 6 steps DDP at 2 ranks and ZeRO-3 at 4 differ
// from the one-process run by 1.2e-4 and 9.0e-5 (max|a - ref| / max|ref|, in h1.mlp.proj.w). So
// the bound is 5e-4 per tensor; a lost moment or a window read twice moves them by percents. The
// attention key bias (true gradient zero: AdamW moves it by rounding noise in any implementation)
// is compared in absolute terms, below 1e-5, as in tests/ddp-equivalence.test.ts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from './fixtures/cli.ts';
import { expectParamsClose, finalParams } from './fixtures/zero/expect-close.ts';

const root = mkdtempSync(join(tmpdir(), 'zr-reshard-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const GLOBAL = 12;
const common =
  '--backend wasm --steps 6 --eval-interval 100 --eval-batches 1 --sample-tokens 0 --seed 11 --warmup-steps 1'.split(
    ' ',
  );

/** `--strategy S [--offload]` for a name like zero3+offload. */
const strategyArgs = (s: string): string[] =>
  s.endsWith('+offload') ? ['--strategy', s.slice(0, -'+offload'.length), '--offload'] : ['--strategy', s];

async function train(args: string[]): Promise<string> {
  const r = await runCli(['train', ...args, ...common], { timeoutMs: 120_000 });
  expect(r.code, r.output).toBe(0);
  return r.output;
}

let reference: Map<string, Float32Array>;

describe('a checkpoint resumes at another world size with another strategy (real CLI)', () => {
  // The uninterrupted reference: one process, the whole global batch.
  beforeAll(async () => {
    const out = join(root, 'reference');
    await train(['--nproc', '1', '--batch-size', String(GLOBAL), '--checkpoint-interval', '3', '--out', out]);
    reference = finalParams(out, 6);
    // The last 3 steps moved the parameters far more than the tolerance.
    const start = finalParams(out, 3);
    expect(() => expectParamsClose(start, reference)).toThrow();
  }, 120_000);

  const pairs: Array<[string, number, string, number]> = [
    ['ddp', 2, 'zero3', 3],
    ['zero3', 4, 'zero1', 2],
    ['zero1', 2, 'zero2', 2],
    ['zero2', 3, 'zero3+offload', 1],
    ['zero3+offload', 2, 'ddp', 4],
  ];
  for (const [from, n, to, m] of pairs) {
    it(`${from} at ${n} -> ${to} at ${m}`, async () => {
      const out = join(root, `${from}-${n}-${to}-${m}`);
      const batch = ['--batch-size', String(GLOBAL / n)];
      await train(['--nproc', String(n), ...strategyArgs(from), ...batch, '--stop-after', '3', '--out', out]);
      const log = await train(['--nproc', String(m), ...strategyArgs(to), ...batch, '--resume', '--out', out]);
      expect(log).toMatch(new RegExp(`resumed at step 3 .*saved by ${n} ${from.split('+')[0]} rank`));
      const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
      expect(summary).toMatchObject({ resumedFrom: 3, worldSize: m, steps: 6 });
      expectParamsClose(finalParams(out, 6), reference);
    }, 180_000);
  }

  it('a consolidated file (parameters and AdamW moments) resumes at 1 and at 3 ranks', async () => {
    const first = join(root, 'to-consolidate');
    await train(['--nproc', '2', '--strategy', 'zero3', '--batch-size', '6', '--stop-after', '3', '--out', first]);
    const source = join(first, 'checkpoints', 'step-00000003');
    const file = join(root, 'step3.zrc');
    const c = await runCli(['consolidate', source, '--out', file]);
    expect(c.code, c.output).toBe(0);
    for (const [nproc, strategy] of [
      [1, 'zero2'],
      [3, 'ddp'],
    ] as const) {
      const out = join(root, `from-file-${nproc}`);
      const args = ['--nproc', String(nproc), '--strategy', strategy, '--batch-size', '4'];
      const log = await train([...args, '--resume-from', file, '--out', out]);
      expect(log).toMatch(/resumed at step 3 from .*step3\.zrc \(saved by 2 zero3 rank/);
      expectParamsClose(finalParams(out, 6), reference);
    }
    const paramsOnly = join(root, 'params.zrc');
    expect((await runCli(['consolidate', source, '--params-only', '--out', paramsOnly])).code).toBe(0);
    const refused = await runCli(['train', '--resume-from', paramsOnly, '--out', join(root, 'no'), ...common]);
    expect(refused.code).not.toBe(0);
    expect(refused.output).toMatch(/holds parameters only .*expected one with the optimizer state/);
  }, 180_000);
});
