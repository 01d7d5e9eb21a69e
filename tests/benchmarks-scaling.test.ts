// The scaling benchmark's modes, run for real on a few steps: 2-rank DDP, the lockstep control
// (ranks that train alone and meet at a barrier before each update) and the ceiling (two
// independent one-rank jobs). Checks the figures each mode reports are consistent, not how fast.
import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

interface Run {
  mode: string;
  nproc: number;
  tokensPerSec: number;
  stepMs: number;
  commMs: number;
  batchPerRank: number;
  ofCeiling?: number;
  stepsMeasured: number;
}

describe('benchmarks/scaling/main.ts', () => {
  it('runs DDP, lockstep and the ceiling for 2 ranks and reports each as tokens/s of all ranks', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'zr-scaling-'));
    try {
      const out = join(dir, 'scaling.json');
      const args = [
        '--import',
        'tsx',
        'benchmarks/scaling/main.ts',
        '--models',
        'tiny',
        '--nprocs',
        '2',
        '--ceiling',
        '2',
        '--lockstep',
        '--rounds',
        '1',
        '--steps-tiny',
        '8',
        '--warmup-tiny',
        '3',
        '--no-charts',
        '--no-cpu-balance',
        '--out',
        out,
      ];
      await new Promise<void>((resolve, reject) =>
        execFile(process.execPath, args, { cwd: root, timeout: 240_000 }, (err, _stdout, stderr) =>
          err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(),
        ),
      );
      const runs = (JSON.parse(readFileSync(out, 'utf8')) as { runs: Run[] }).runs;
      expect(runs.map((r) => r.mode)).toEqual(['ddp', 'lockstep', 'independent']);
      const blockSize = 64; // the tiny preset's context
      const tokensPerStep = 2 * runs[0]!.batchPerRank * blockSize;
      for (const r of runs) {
        expect(r.nproc).toBe(2);
        expect(r.stepsMeasured).toBe(5);
        // tokens/s counts both ranks' windows: 2 × batch × context per step of stepMs (medians of
        // an odd count of steps, so of the same step). The ceiling sums two jobs' medians against
        // the first job's step, so only roughly.
        const perStep = (r.tokensPerSec * r.stepMs) / 1000 / tokensPerStep;
        if (r.mode === 'independent') (expect(perStep).toBeGreaterThan(0.5), expect(perStep).toBeLessThan(1.5));
        else expect(perStep).toBeCloseTo(1, 6);
      }
      const lockstep = runs.find((r) => r.mode === 'lockstep')!;
      const ceiling = runs.find((r) => r.mode === 'independent')!;
      // Ranks that synchronise wait every step (the barrier, the gradient all-reduce); the
      // independent jobs never do.
      expect(lockstep.commMs).toBeGreaterThan(0);
      expect(runs.find((r) => r.mode === 'ddp')!.commMs).toBeGreaterThan(0);
      expect(ceiling.commMs).toBe(0);
      // Both synchronous modes are compared with the same round's ceiling.
      for (const r of runs.filter((x) => x.mode !== 'independent'))
        expect(r.ofCeiling).toBeCloseTo(r.tokensPerSec / ceiling.tokensPerSec, 6);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 300_000);
});
