// What `zeroring train --nproc 2` (the quick start) shows on a terminal: the workers' log lines
// pretty-printed like the launcher's own (not JSON), and none of Dawn's adapter warnings when the
// backend chosen is wasm. A real pseudo-terminal from util-linux's `script`, as a user's shell has.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const cliBin = join(repoRoot, 'packages/cli/bin/zeroring.js');

/** Runs the command line in a pseudo-terminal; resolves with everything the terminal showed. */
function onTerminal(args: string[]): Promise<{ code: number | null; screen: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.ZERORING_LOG_FORMAT;
  delete env.ZERORING_LOG_LEVEL;
  const line = [process.execPath, cliBin, ...args].map((a) => `'${a}'`).join(' ');
  return new Promise((resolve) => {
    const child = spawn('script', ['-qec', line, '/dev/null'], {
      cwd: repoRoot,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let screen = '';
    child.stdout.on('data', (d: Buffer) => (screen += d));
    child.stderr.on('data', (d: Buffer) => (screen += d));
    child.once('close', (code) => resolve({ code, screen }));
  });
}

describe('zeroring train on a terminal', () => {
  it("prints the workers' logs pretty and no Dawn warnings", async () => {
    const r = await onTerminal([
      'train',
      '--nproc',
      '2',
      '--steps',
      '2',
      '--batch-size',
      '4',
      '--eval-batches',
      '1',
      '--sample-tokens',
      '10',
    ]);
    expect(r.code, r.screen).toBe(0);
    expect(r.screen).toMatch(/^\[rank 0\] \[\d\d:\d\d:\d\d\.\d{3}\] INFO: tfjs backend: wasm/m);
    expect(r.screen).toMatch(/^\[rank 0\] \[\d\d:\d\d:\d\d\.\d{3}\] INFO: done: 2 steps/m);
    expect(r.screen).not.toMatch(/\{"level":/);
    expect(r.screen).not.toMatch(/artificially reduced/);
  });
});
