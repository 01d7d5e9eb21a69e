// Every benchmark script answers `--help` with its documented options and runs nothing (several
// take minutes and overwrite their results file), and refuses an option it does not know.
import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { scriptUsage } from '../benchmarks/common/args.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const benchDir = join(root, 'benchmarks');
// Each benchmark has its own folder under benchmarks/ (results/ holds data, not scripts).
const scripts = readdirSync(benchDir, { withFileTypes: true })
  .filter((d) => d.isDirectory() && d.name !== 'results')
  .flatMap((d) => readdirSync(join(benchDir, d.name)).map((f) => join(benchDir, d.name, f)))
  .filter((f) => f.endsWith('.ts') && readFileSync(f, 'utf8').includes('benchArgs(import.meta.url'))
  .map((f) => relative(root, f));

function runScript(script: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', script, ...args],
      { cwd: root, timeout: 60_000 },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr }),
    );
  });
}

describe('benchmark scripts: command-line options', () => {
  it('finds the scripts, and each documents how to run it in its header', () => {
    expect(scripts).toContain('benchmarks/soak/main.ts');
    expect(scripts).toContain('benchmarks/scaling/main.ts');
    expect(scripts).toContain('benchmarks/collectives/vs-gloo.ts');
    expect(scripts.length).toBeGreaterThanOrEqual(12);
    for (const s of scripts)
      expect(scriptUsage(pathToFileURL(join(root, s)).href), s).toContain(`node --import tsx ${s}`);
  });

  it('--help prints the usage and exits 0 without running (soak writes no results file)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'zr-bench-help-'));
    const soakJson = join(dir, 'soak.json');
    try {
      const r = await runScript('benchmarks/soak/main.ts', ['--json', soakJson, '--help']);
      expect(r.code, r.stderr).toBe(0);
      expect(existsSync(soakJson)).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    for (let i = 0; i < scripts.length; i += 2) {
      const batch = scripts.slice(i, i + 2);
      const results = await Promise.all(batch.map((s) => runScript(s, ['--help'])));
      results.forEach((r, j) => {
        expect(r.code, `${batch[j]}: ${r.stderr}`).toBe(0);
        expect(r.stdout).toContain(`node --import tsx ${batch[j]}`);
      });
    }
  });

  it('an unknown option is an error with the usage, exit 2', async () => {
    const r = await runScript('benchmarks/soak/main.ts', ['--colectives', '5']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/Unknown option '--colectives'/);
    expect(r.stderr).toContain('node --import tsx benchmarks/soak/main.ts');
  });
});
