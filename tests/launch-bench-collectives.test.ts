// `zeroring bench collectives` at tiny sizes: the real command, real workers, and every result
// checked against the reference (0 wrong). The checker itself is tested to catch a wrong value.
import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exitedWithin, repoRoot, runCli, stopRunning } from './fixtures/launch/helpers.ts';

afterEach(stopRunning);
import { busFactor, countWrong, makeCase, parseBytes, sweep, value } from '@zeroring/comm';

describe('bench collectives: reference data', () => {
  it('expected results match a brute-force computation, and a single wrong element is counted', () => {
    const n = 3;
    const ar = makeCase('allreduce', 1, n, 10);
    for (let i = 0; i < 10; i++) expect(ar.expected[i]).toBe(value(0, i) + value(1, i) + value(2, i));
    const rs = makeCase('reducescatter', 2, n, 12);
    for (let j = 0; j < 4; j++) expect(rs.expected[j]).toBe(value(0, 8 + j) + value(1, 8 + j) + value(2, 8 + j));
    const ag = makeCase('allgather', 1, n, 12);
    expect(Array.from(ag.input)).toEqual([0, 1, 2, 3].map((j) => value(1, j)));
    expect(ag.expected[4 * 2 + 3]).toBe(value(2, 3));
    const bc = makeCase('broadcast', 2, n, 5);
    bc.reset();
    expect(countWrong(bc.output, bc.expected)).toBeGreaterThan(0); // rank 2's own data is not rank 0's
    const good = ar.expected.slice();
    expect(countWrong(good, ar.expected)).toBe(0);
    good[7]! += 1;
    expect(countWrong(good, ar.expected)).toBe(1);
    expect(busFactor('allreduce', 4)).toBe(1.5);
    expect(busFactor('allgather', 4)).toBe(0.75);
    expect(busFactor('broadcast', 4)).toBe(1);
  });

  it('parses sizes and sweeps by a factor', () => {
    expect(parseBytes('1K')).toBe(1024);
    expect(parseBytes('64M')).toBe(64 * 1024 * 1024);
    expect(parseBytes('4KiB')).toBe(4096);
    expect(parseBytes('100')).toBe(100);
    expect(() => parseBytes('lots')).toThrow(/size 'lots' is not understood/);
    expect(sweep(1024, 16384, 4)).toEqual([1024, 4096, 16384]);
  });
});

describe('zeroring bench collectives (CLI)', () => {
  it('runs every op on 3 ranks at tiny sizes with 0 wrong results and writes the JSON', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'zr-bench-'));
    try {
      const file = join(dir, 'out.json');
      const run = runCli([
        'bench',
        'collectives',
        '--nproc',
        '3',
        '--min-bytes',
        '4',
        '--max-bytes',
        '4K',
        '--step-factor',
        '4',
        '--iters',
        '3',
        '--warmup',
        '1',
        '--pump-bytes',
        '64K',
        '--pump-reps',
        '2',
        '--json',
        file,
      ]);
      const { code } = await exitedWithin(run, 100_000);
      expect(code, run.stderr()).toBe(0);
      expect(run.stdout()).toMatch(/^ceiling\s+65536\s/m);
      expect(run.stdout()).toMatch(/^allreduce\s+4096\s+1024\s/m);
      expect(run.stdout()).toContain('# wrong results: 0');
      const doc = JSON.parse(readFileSync(file, 'utf8')) as {
        nproc: number;
        totalWrong: number;
        ceiling: { busbwGBs: number };
        rows: Array<{
          op: string;
          bytes: number;
          count: number;
          busbwGBs: number;
          ofCeiling: number;
          wrong: number;
          timeUs: number;
        }>;
      };
      expect(doc.nproc).toBe(3);
      expect(doc.totalWrong).toBe(0);
      expect(doc.ceiling.busbwGBs).toBeGreaterThan(0);
      for (const op of ['allreduce', 'reducescatter', 'allgather', 'broadcast']) {
        const rows = doc.rows.filter((r) => r.op === op);
        expect(rows.length, op).toBeGreaterThanOrEqual(3);
        for (const r of rows) {
          expect(r.wrong).toBe(0);
          expect(r.timeUs).toBeGreaterThan(0);
          expect(r.ofCeiling).toBeCloseTo(r.busbwGBs / doc.ceiling.busbwGBs, 6);
          if (op === 'reducescatter' || op === 'allgather') expect(r.count % 3).toBe(0);
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('writes to the current directory by default, never into the recorded results', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'zr-bench-cwd-'));
    // What benchmarks/results holds, whatever that is: the run must leave it as it was.
    const results = join(repoRoot, 'benchmarks/results');
    const snapshot = () =>
      existsSync(results) ? readdirSync(results).map((f) => [f, statSync(join(results, f)).mtimeMs]) : [];
    const before = snapshot();
    try {
      const run = runCli(
        (
          'bench collectives --nproc 2 --ops allreduce --min-bytes 4 --max-bytes 64 ' +
          '--iters 1 --warmup 0 --pump-bytes 4K --pump-reps 1'
        ).split(' '),
        {},
        dir,
      );
      const { code } = await exitedWithin(run, 100_000);
      expect(code, run.stderr()).toBe(0);
      expect(readdirSync(dir)).toEqual(['collectives-2.json']);
      expect(JSON.parse(readFileSync(join(dir, 'collectives-2.json'), 'utf8'))).toMatchObject({
        nproc: 2,
        totalWrong: 0,
      });
      expect(snapshot()).toEqual(before);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('rejects an unknown op naming it', async () => {
    const run = runCli(['bench', 'collectives', '--nproc', '2', '--ops', 'allreduce,alltoall']);
    expect((await run.exited).code).not.toBe(0);
    expect(run.stderr()).toMatch(/op 'alltoall' is unknown/);
  });
});
