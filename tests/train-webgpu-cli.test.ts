// The default `zeroring train --backend webgpu` flow as a user runs it, end to end on the WebGPU
// adapter here (lavapipe in CI: scripts/setup-webgpu-cpu.sh): training, validation, checkpoint,
// the text sample at the end and summary.json, then `zeroring sample` on the same backend, and a
// 2-stage pipeline against one process. Every
// read-back on these paths must be asynchronous: tfjs-backend-webgpu cannot read synchronously
// in Node. Without an adapter the tests are reported as skipped with the reason; in CI, where
// setup installs lavapipe, a missing adapter fails instead.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { once } from './fixtures/once.ts';
import { repoRoot, runCli } from './fixtures/cli.ts';
import { webgpuSkipReason } from './fixtures/webgpu.ts';

const out = mkdtempSync(join(tmpdir(), 'zr-webgpu-cli-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

const skipReason = await webgpuSkipReason('webgpu CLI tests', { inChild: true });

describe('read-backs in the packages', () => {
  it('are asynchronous wherever a GPU backend runs (sync reads only in host-memory.ts, for cpu and wasm)', () => {
    const found: string[] = [];
    const walk = (dir: string): void => {
      for (const name of readdirSync(dir)) {
        const path = join(dir, name);
        if (statSync(path).isDirectory()) walk(path);
        else if (name.endsWith('.ts') && name !== 'host-memory.ts') {
          readFileSync(path, 'utf8')
            .split('\n')
            .forEach((line, i) => {
              const code = line.replace(/\/\/.*$/, '');
              if (
                /\b(dataSync|arraySync|bufferSync|readSync)\(/.test(code) &&
                !/\bfs\.readSync|\breadSync\(this\.fd|readSync\(fd/.test(code)
              ) {
                found.push(`${path}:${i + 1}: ${line.trim()}`);
              }
            });
        }
      }
    };
    for (const pkg of readdirSync(join(repoRoot, 'packages'))) walk(join(repoRoot, 'packages', pkg, 'src'));
    expect(found).toEqual([]);
  });
});

describe.skipIf(skipReason !== undefined)('zeroring train --backend webgpu (CLI)', () => {
  // The run both tests use, trained once by the first that needs it.
  const trained = once(() =>
    runCli([
      'train',
      '--backend',
      'webgpu',
      '--steps',
      '2',
      '--eval-batches',
      '2',
      '--sample-tokens',
      '40',
      '--out',
      out,
    ]),
  );

  it('trains, samples and writes summary.json', async () => {
    const r = await trained();
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/"backend":"webgpu"/);
    expect(r.stderr).not.toMatch(/synchronously reading data from GPU/);
    expect(r.stdout).toContain('--- sample ---');
    const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
    expect(summary).toMatchObject({ steps: 2, strategy: 'local', config: { backend: 'webgpu' } });
    expect(summary.finalLoss).toBeGreaterThan(0);
    expect(summary.finalValLoss).toBeLessThan(summary.initialValLoss);
    expect(Array.from(summary.sample as string)).toHaveLength(41); // the newline prompt and 40 characters
    expect(existsSync(join(out, 'checkpoints', 'step-00000002', 'manifest.json'))).toBe(true);
  });

  it('a 2-stage pipeline on webgpu gives the losses and gradient norms of one process', async () => {
    // The fused optimizer reads its norm back for the sum over the stages: the one WebGPU path a
    // pipeline changes.
    const common =
      '--backend webgpu --steps 3 --batch-size 2 --eval-interval 100 --eval-batches 1 --sample-tokens 0'.split(' ');
    const runs = [
      ['--nproc', '1', '--grad-accum', '2'],
      ['--nproc', '2', '--pp', '2', '--micro-batches', '2'],
    ].map(async (flags, i) => {
      const dir = join(out, `pipeline-${i}`);
      const r = await runCli(['train', ...flags, ...common, '--out', dir], { timeoutMs: 240_000 });
      expect(r.code, r.stderr).toBe(0);
      const lines = readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n');
      return lines.map((l) => JSON.parse(l) as { loss: number; gradNorm: number });
    });
    const [one, piped] = [await runs[0]!, await runs[1]!];
    expect(piped).toHaveLength(3);
    piped.forEach((x, i) => {
      expect(x.loss).toBeCloseTo(one[i]!.loss, 4);
      expect(x.gradNorm).toBeCloseTo(one[i]!.gradNorm, 4);
    });
  }, 300_000);

  it('samples from that checkpoint on webgpu', async () => {
    const run = await trained();
    expect(run.code, run.stderr).toBe(0);
    const r = await runCli([
      'sample',
      '--checkpoint',
      out,
      '--backend',
      'webgpu',
      '--prompt',
      'Call me',
      '--max-new-tokens',
      '10',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(Array.from(r.stdout.replace(/\n$/, ''))).toHaveLength('Call me'.length + 10);
  });
});
