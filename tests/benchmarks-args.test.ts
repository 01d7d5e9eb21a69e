// Every benchmark script answers `--help` with its documented options and runs nothing (several
// take minutes and overwrite their results file), and refuses an option it does not know.
import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { scriptUsage } from '../benchmarks/args.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const benchDir = join(root, 'benchmarks');
const scripts = [benchDir, join(benchDir, 'collectives')]
  .flatMap((dir) => readdirSync(dir).map((f) => join(dir, f)))
  .filter((f) => f.endsWith('.ts') && readFileSync(f, 'utf8').includes('benchArgs(import.meta.url'))
  .map((f) => relative(root, f));

function runScript(script: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', script, ...args], { cwd: root, timeout: 60_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr }),
    );
  });
}

describe('benchmark scripts: command-line options', () => {
  it('finds the scripts, and each documents how to run it in its header', () => {
    expect(scripts).toContain('benchmarks/soak.ts');
    expect(scripts).toContain('benchmarks/scaling.ts');
    expect(scripts).toContain('benchmarks/collectives/vs-gloo.ts');
    for (const s of scripts) expect(scriptUsage(pathToFileURL(join(root, s)).href), s).toContain(`node --import tsx ${s}`);
  });

  it('--help prints the usage and exits 0 without running (soak leaves its results file alone)', async () => {
    const soakJson = join(benchDir, 'results/soak.json');
    const soakBefore = statSync(soakJson).mtimeMs;
    for (let i = 0; i < scripts.length; i += 2) {
      const batch = scripts.slice(i, i + 2);
      const results = await Promise.all(batch.map((s) => runScript(s, ['--help'])));
      results.forEach((r, j) => {
        expect(r.code, `${batch[j]}: ${r.stderr}`).toBe(0);
        expect(r.stdout).toContain(`node --import tsx ${batch[j]}`);
      });
    }
    expect(statSync(soakJson).mtimeMs).toBe(soakBefore);
  });

  it('an unknown option is an error with the usage, exit 2', async () => {
    const r = await runScript('benchmarks/soak.ts', ['--colectives', '5']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/Unknown option '--colectives'/);
    expect(r.stderr).toContain('node --import tsx benchmarks/soak.ts');
  });
});
