// Uneven splits of a step's windows across ranks (config.batchSplit, config.balanceBatch;
// `zeroring train --batch-split / --balance`), with real processes through the trainer: the
// ranks read the same windows as one process reading the whole step, so 2 DDP ranks must end
// with its parameters (and report its loss), whether the split is fixed or follows measured
// speed; 3 ZeRO-2 ranks with an uneven split must end where the even split ends. The balancing
// run has one rank really slower (its data loading spins per window): the split must move
// windows off it. Tolerance and its reasons: compareParams (tests/fixtures/zero/compare.ts).
import { afterAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launch } from '@zeroring/comm';
import { Collect, repoRoot } from './fixtures/launch/helpers.ts';
import { compareParams, type Params } from './fixtures/zero/compare.ts';
// Type only (erased): the worker module itself starts training when loaded.
import type { BalanceJob } from './fixtures/ddp/balance-worker.ts';

const worker = fileURLToPath(new URL('./fixtures/ddp/balance-worker.ts', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'zr-balance-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const EMBD = 32; // nEmbd of the worker's GPT
const SEED = 3;

interface Outcome {
  params: Params;
  splits: number[][];
  /** Per step, each rank's compute + optimizer time (ms), as the balancer saw them. */
  workMs: number[][];
  /** Per step, each rank's comm wait (ms), and the least of them (StepEvent.commExposedMs). */
  commMs: number[][];
  commExposedMs: number[];
  finalLoss: number;
}

const parse = (stdout: string, out: string): Outcome => {
  const line = stdout.split('\n').find((l) => l.includes('RESULT '));
  if (!line) throw new Error(`no RESULT line in: ${stdout}`);
  return {
    ...JSON.parse(line.slice(line.indexOf('RESULT ') + 7)),
    params: JSON.parse(readFileSync(out, 'utf8')) as Params,
  };
};

let runs = 0;

async function runDist(job: BalanceJob): Promise<Outcome> {
  const out = join(dir, `dist-${runs++}.json`);
  const stdout = new Collect();
  const stderr = new Collect();
  const r = await launch({
    nprocPerNode: job.nproc,
    script: worker,
    args: [JSON.stringify({ mode: 'dist', seed: SEED, out, ...job })],
    cwd: repoRoot,
    stdout,
    stderr,
    forwardSignals: false,
  });
  expect(r.exitCode, stderr.text).toBe(0);
  return parse(stdout.text, out);
}

function runLocal(job: BalanceJob): Promise<Outcome> {
  const out = join(dir, `local-${runs++}.json`);
  return new Promise((resolve, reject) => {
    const env = { ...process.env };
    for (const k of ['RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'LOCAL_WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'])
      delete env[k];
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', worker, JSON.stringify({ mode: 'local', seed: SEED, out, ...job })],
      { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    child.once('error', reject);
    child.once('close', (code) =>
      code === 0 ? resolve(parse(stdout, out)) : reject(new Error(`reference run exited ${code}: ${stderr}`)),
    );
  });
}

function expectSameModel(got: Outcome, ref: Outcome, label: string): void {
  const d = compareParams(got.params, ref.params, EMBD);
  expect(d.sameNames, label).toBe(true);
  expect(d.rel, `${label}: worst at ${d.relAt}`).toBeLessThan(1e-5);
  expect(d.keyBiasAbs, `${label}: key bias`).toBeLessThan(1e-5);
  expect(Math.abs(got.finalLoss - ref.finalLoss) / ref.finalLoss, `${label}: reported loss`).toBeLessThan(1e-5);
}

describe('uneven batch splits end where one process reading the whole step ends', () => {
  it('DDP, 2 ranks, fixed split 1 + 5 of 6 windows', async () => {
    const job: BalanceJob = { strategy: 'ddp', nproc: 2, batch: 3, steps: 3, batchSplit: [1, 5] };
    const [dist, ref] = [await runDist(job), await runLocal(job)];
    expect(dist.splits).toEqual([
      [1, 5],
      [1, 5],
      [1, 5],
    ]);
    expectSameModel(dist, ref, 'ddp 1+5');
  }, 300_000);

  it('ZeRO-2, 3 ranks, fixed split 1 + 4 + 7 of 12 windows', async () => {
    // Against the same 3 ranks with the even split: averaging over 3 ranks rounds differently from
    // one process's mean over 12 windows, and AdamW's normalisation carries that to ~1e-5 in 3
    // steps whatever the split; like for like, only the split differs.
    const job: BalanceJob = { strategy: 'zero2', nproc: 3, batch: 4, steps: 3, batchSplit: [1, 4, 7] };
    const [dist, even] = [await runDist(job), await runDist({ ...job, batchSplit: undefined })];
    expect(dist.splits.at(-1)).toEqual([1, 4, 7]);
    expect(even.splits.at(-1)).toEqual([]);
    expectSameModel(dist, even, 'zero2 1+4+7 vs 4+4+4');
  }, 300_000);

  // Rank 1 waits 50 ms more per window than rank 0, whose window costs ~25 ms here and up to
  // ~100 ms on a loaded machine (CI runs two test files at once on 2 cores); 5 + 3 then always
  // promises a step shorter by more than the balancer's 3 %. (A 15 ms spin failed in CI: the spin
  // also took CPU from rank 0, and no split looked better.)
  const slowRank1: BalanceJob = {
    strategy: 'ddp',
    nproc: 2,
    batch: 4,
    steps: 12,
    balance: true,
    slowRanks: [1],
    slowMsPerWindow: 50,
  };

  it('DDP, 2 ranks, balancing: windows move off the slower rank, the model stays the same', async () => {
    const job = slowRank1;
    const [dist, ref] = [await runDist(job), await runLocal(job)];
    expect(dist.splits[0]).toEqual([4, 4]);
    const last = dist.splits.at(-1)!;
    expect(last[0] + last[1]).toBe(8);
    expect(
      last[0],
      `splits per step: ${JSON.stringify(dist.splits)}, work per step (ms): ${JSON.stringify(dist.workMs)}`,
    ).toBeGreaterThan(last[1]);
    expectSameModel(dist, ref, 'ddp balanced');
  }, 300_000);

  it('DDP, 2 ranks, even split: the slower rank shows as straggler wait, not as exposed communication', async () => {
    // Rank 1 reads 4 windows 100 ms each more slowly: rank 0 waits ~400 ms a step for it, while
    // rank 1, last to finish its backward, waits only for the last bucket's all-reduce. (At 50 ms
    // a window, other test files sharing the 2 cores once cut rank 0's wait to 70 ms.)
    const dist = await runDist({ ...slowRank1, slowMsPerWindow: 100, balance: false, steps: 4 });
    const detail =
      `comm wait per step and rank (ms): ${JSON.stringify(dist.commMs)}, ` +
      `exposed: ${JSON.stringify(dist.commExposedMs)}`;
    expect(dist.commExposedMs).toHaveLength(4);
    for (const [i, exposed] of dist.commExposedMs.entries()) {
      const [rank0, rank1] = dist.commMs[i]!;
      expect(Math.abs(exposed - Math.min(rank0!, rank1!)), detail).toBeLessThan(1); // the RESULT rounds ranks' figures
      expect(rank0! - exposed, detail).toBeGreaterThan(80); // the straggler's extra ~400 ms, less scheduling noise
      expect(exposed, detail).toBeLessThan(rank0! / 3);
    }
  }, 300_000);

  it('DDP, 2 ranks, balancing resumed from a checkpoint starts from the split it had reached', async () => {
    const outDir = join(dir, 'resume');
    const job = slowRank1;
    const first = await runDist({ ...job, stopAfterSteps: 8, outDir });
    const saved = JSON.parse(readFileSync(join(outDir, 'checkpoints', 'step-00000008', 'trainer.json'), 'utf8')) as {
      batchSplit?: number[];
    };
    expect(saved.batchSplit, `splits per step: ${JSON.stringify(first.splits)}`).toBeDefined();
    expect(saved.batchSplit![0], `saved split ${JSON.stringify(saved.batchSplit)}`).toBeGreaterThan(
      saved.batchSplit![1],
    );
    const [resumed, ref] = [await runDist({ ...job, outDir, resume: true }), await runLocal(job)];
    expect(resumed.splits).toHaveLength(4);
    expect(resumed.splits[0]).toEqual(saved.batchSplit);
    expectSameModel(resumed, ref, 'ddp balanced, resumed');
  }, 300_000);
});
