// Faults in a real `zeroring train` job (the CLI, the launcher, real worker processes):
// - elastic restart: rank 1 SIGKILLs itself mid-run (ZERORING_FAULT_KILL_AT_STEP, first attempt
//   only), `--max-restarts 1` restarts the group from the newest complete checkpoint, and the run
//   ends with parameters bit-identical to an uninterrupted run;
// - NaN in one rank's gradients (ZERORING_FAULT_NAN_AT_STEP): every rank fails with
//   NonFiniteGradientError naming the step and the rank; with --skip-nonfinite the step is
//   skipped on all ranks (parameters and optimizer state after it equal those before it).
// After each run no process of it may be left.
import { afterAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { leftovers, runCli } from './fixtures/cli.ts';

const root = mkdtempSync(join(tmpdir(), 'zr-faults-train-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const common = (
  '--nproc 2 --backend wasm --batch-size 2 --eval-interval 100 ' +
  '--eval-batches 1 --sample-tokens 0 --seed 11 --warmup-steps 1'
).split(' ');
const summaryOf = (dir: string) => JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8'));
const sha = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');
const ckpt = (dir: string, step: number, file: string) =>
  join(dir, 'checkpoints', `step-${String(step).padStart(8, '0')}`, file);

describe('zeroring train under faults', () => {
  it('a rank killed mid-run is restarted with the group from the last checkpoint and ends bit-identical', async () => {
    const plain = join(root, 'plain');
    const killed = join(root, 'killed');
    const args = ['train', ...common, '--steps', '4', '--checkpoint-interval', '2'];
    const [a, b] = await Promise.all([
      runCli([...args, '--out', plain]),
      runCli([...args, '--out', killed, '--max-restarts', '1'], {
        env: { ZERORING_FAULT_KILL_AT_STEP: '3', ZERORING_TIMEOUT_MS: '60000' },
      }),
    ]);
    expect(a.code, a.output).toBe(0);
    expect(b.code, b.output).toBe(0);
    expect(b.output).toMatch(/restarting the local group \(restart 1 of 1\) after rank 1 failed with signal SIGKILL/);
    expect(b.output).toMatch(/resuming from the newest complete checkpoint/);
    const sa = summaryOf(plain);
    const sb = summaryOf(killed);
    expect(sb).toMatchObject({ steps: 4, resumedFrom: 2 });
    expect(sb.paramChecksum).toBe(sa.paramChecksum);
    // Bit for bit: the final full parameters and every rank's optimizer shard.
    for (const f of ['model.bin', 'shard-rank0.bin', 'shard-rank1.bin'])
      expect(sha(ckpt(killed, 4, f)), f).toBe(sha(ckpt(plain, 4, f)));
    expect(await leftovers(a.marker)).toEqual([]);
    expect(await leftovers(b.marker)).toEqual([]);
  }, 600_000);

  it('NaN gradients on one rank: NonFiniteGradientError on all, naming the step; --skip-nonfinite skips', async () => {
    const failed = join(root, 'nan-fail');
    const skipped = join(root, 'nan-skip');
    const env = { ZERORING_FAULT_NAN_AT_STEP: '1', ZERORING_TIMEOUT_MS: '60000' };
    const [f, s] = await Promise.all([
      runCli(['train', ...common, '--steps', '3', '--out', failed], { env }),
      runCli(['train', ...common, '--steps', '2', '--checkpoint-interval', '1', '--skip-nonfinite', '--out', skipped], {
        env,
      }),
    ]);
    expect(f.code, f.output).not.toBe(0);
    for (const rank of [0, 1]) {
      expect(f.output, `rank ${rank}`).toMatch(
        new RegExp(`\\[rank ${rank}\\] .*NonFiniteGradientError.*at step 1 on rank\\(s\\) 1`),
      );
    }
    expect(f.output).toMatch(/job failed: rank \d \(local rank \d\) exited with exit code 1/);

    expect(s.code, s.output).toBe(0);
    expect(s.output).toMatch(/step 1: non-finite gradients \(NaN or Inf\) on rank\(s\) 1; step skipped on all ranks/);
    const sum = summaryOf(skipped);
    expect(sum.steps).toBe(2);
    expect(Number.isFinite(sum.paramChecksum)).toBe(true);
    // The state after the skipped step 1 (checkpoint 2) is the state after step 0 (checkpoint 1).
    for (const file of ['model.bin', 'shard-rank0.bin', 'shard-rank1.bin'])
      expect(sha(ckpt(skipped, 2, file)), file).toBe(sha(ckpt(skipped, 1, file)));
    expect(await leftovers(f.marker)).toEqual([]);
    expect(await leftovers(s.marker)).toEqual([]);
  }, 600_000);
});
