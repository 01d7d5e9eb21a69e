// examples/bring-your-own-model through the real CLI launcher with 2 workers: the MLP learns
// (validation MSE well below the variance of the targets) and both ranks end with the same weights.
import { afterAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'zr-byom-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('examples/bring-your-own-model', () => {
  it('trains with zeroring launch --nproc-per-node 2 (with noSync accumulation)', async () => {
    const out = join(dir, 'result.json');
    const args = [
      'packages/cli/bin/zeroring.js',
      'launch',
      '--nproc-per-node',
      '2',
      'examples/bring-your-own-model/train.ts',
      '--backend',
      'wasm',
      '--steps',
      '200',
      '--accum',
      '2',
      '--batch-size',
      '32',
      '--out',
      out,
    ];
    const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve) => {
      const child = spawn(process.execPath, args, { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      child.stdout.on('data', (d: Buffer) => (output += d));
      child.stderr.on('data', (d: Buffer) => (output += d));
      child.once('close', (c) => resolve({ code: c, output }));
    });
    expect(code, output).toBe(0);
    expect(output).toContain('[rank 0] training an MLP');
    const r = JSON.parse(readFileSync(out, 'utf8'));
    expect(r).toMatchObject({ worldSize: 2, steps: 200, identical: true });
    expect(r.valMse).toBeLessThan(0.5 * r.variance);
  }, 300_000);
});
