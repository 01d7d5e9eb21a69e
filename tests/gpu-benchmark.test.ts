// The GPU benchmark (benchmarks/gpu/main.ts) run for real on the WebGPU adapter here (lavapipe
// in CI) with its smallest settings: the tiny GPT on 1 and 2 processes for 2 steps, and as much
// of the matmul table as a few seconds allow. Checks what the JSON and the table report and that
// the figures agree with each other, not how fast anything is. Without an adapter the test is
// reported as skipped with the reason; in CI, where setup installs lavapipe, it fails instead.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { presets } from '@zeroring/gpt';
import { fp32Peak, trainFlopsPerToken } from '../benchmarks/common/flops.ts';
import { webgpuSkipReason } from './fixtures/webgpu.ts';
import type { GpuCounts } from '../benchmarks/gpu/runs.ts';

const root = fileURLToPath(new URL('..', import.meta.url));

const skipReason = await webgpuSkipReason('the GPU benchmark test', { inChild: true });

interface Report {
  adapter: { description: string; software: boolean; shaderF16: boolean; vendor: string };
  peak: { fp32Tflops: number; source: string } | 'unknown';
  runs: Array<{
    model: string;
    nproc: number;
    batchPerRank: number;
    stepsRun: number;
    stepsMeasured: number;
    tokensPerSec: number;
    stepMs: number;
    params: number;
    flopsPerToken: number;
    achievedTflops: number;
    mfu: number;
    ofOneProcess?: number;
    gpuPerStep: GpuCounts;
    error?: string;
  }>;
  matmul: Array<{
    model: string;
    name: string;
    tfjs: { gflops: number };
    tiled: { gflops: number };
    register: { gflops: number };
    faster: string;
    tiledSpeedup: number;
    registerSpeedup: number;
    relDiff: number;
  }>;
  skipped: Array<{ what: string; reason: string }>;
}

describe('the fp32 peaks and the model FLOPs behind MFU', () => {
  it('knows the H200, takes a given peak, and assumes none for software or unknown adapters', () => {
    expect(fp32Peak({ device: 'nvidia-h200', description: 'NVIDIA: 580', software: false })?.tflops).toBe(67);
    expect(fp32Peak({ device: 'nvidia-h100-pcie', software: false })?.tflops).toBe(51);
    expect(fp32Peak({ device: 'llvmpipe', software: true })).toBeUndefined();
    expect(fp32Peak({ device: 'some-new-gpu', software: false })).toBeUndefined();
    expect(fp32Peak({ device: 'llvmpipe', software: true }, 2)).toEqual({ tflops: 2, source: 'given' });
    // nanoGPT's estimate_mfu for GPT-2 small at T 1024: 6N + 12·L·T·C per token.
    expect(trainFlopsPerToken({ params: 124e6, nLayer: 12, blockSize: 1024, nEmbd: 768 })).toBe(
      6 * 124e6 + 12 * 12 * 1024 * 768,
    );
  });
});

describe.skipIf(skipReason !== undefined)('benchmarks/gpu/main.ts on the adapter here', () => {
  it('reports the adapter, tokens/s, MFU, GPU work per step for 1 and 2 processes, and matmul rows', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'zr-gpu-bench-'));
    try {
      const out = join(dir, 'gpu.json');
      const args = [
        '--import',
        'tsx',
        'benchmarks/gpu/main.ts',
        '--models',
        'tiny',
        '--nprocs',
        '1,2',
        '--steps',
        '2',
        '--warmup',
        '1',
        '--matmul-reps',
        '1',
        '--matmul-seconds',
        '8',
        '--time-limit',
        '200',
        '--peak-tflops',
        '0.5',
        '--out',
        out,
      ];
      await new Promise<void>((resolve, reject) =>
        execFile(process.execPath, args, { cwd: root, timeout: 280_000 }, (err, _stdout, stderr) =>
          err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(),
        ),
      );
      const r = JSON.parse(readFileSync(out, 'utf8')) as Report;
      expect(r.adapter.description).toBeTruthy();
      expect(typeof r.adapter.software).toBe('boolean');
      expect(typeof r.adapter.shaderF16).toBe('boolean');
      expect(r.peak).toEqual({ fp32Tflops: 0.5, source: 'given' });

      expect(r.runs.map((x) => [x.model, x.nproc])).toEqual([
        ['tiny', 1],
        ['tiny', 2],
      ]);
      const t = presets.tiny;
      for (const x of r.runs) {
        expect(x.error).toBeUndefined();
        expect([x.stepsRun, x.stepsMeasured]).toEqual([2, 1]);
        expect(x.tokensPerSec).toBeGreaterThan(0);
        // One measured step: its tokens/s is all ranks' windows over that step's time.
        expect((x.tokensPerSec * x.stepMs) / 1000).toBeCloseTo(x.nproc * x.batchPerRank * t.blockSize, 3);
        expect(x.flopsPerToken).toBe(6 * x.params + 12 * t.nLayer * t.blockSize * t.nEmbd);
        expect(x.achievedTflops).toBeCloseTo((x.tokensPerSec * x.flopsPerToken) / 1e12, 9);
        expect(x.mfu).toBeCloseTo(x.achievedTflops / 0.5, 9);
        expect(x.gpuPerStep.dispatches).toBeGreaterThan(0);
        expect(x.gpuPerStep.submissions).toBeGreaterThan(0);
        expect(x.gpuPerStep.readbacks).toBeGreaterThan(0);
        expect(x.gpuPerStep.readbackBytes).toBeGreaterThan(0);
        expect(x.gpuPerStep.enqueueMs).toBeGreaterThan(0);
        // Each step ends in a read-back that waits for the step's GPU work, within the step.
        expect(x.gpuPerStep.waitMs).toBeGreaterThan(0);
        expect(x.gpuPerStep.waitMs).toBeLessThan(x.stepMs);
      }
      expect(r.runs[1]!.ofOneProcess).toBeCloseTo(r.runs[1]!.tokensPerSec / r.runs[0]!.tokensPerSec, 9);

      // However many shapes the few seconds allowed, at least the first; the rest are listed as skipped.
      expect(r.matmul.length).toBeGreaterThan(0);
      expect(r.matmul.length + r.skipped.filter((s) => s.what.startsWith('matmul')).length).toBe(15);
      expect(r.matmul[0]).toMatchObject({ model: 'tiny', name: 'qkv' });
      for (const m of r.matmul) {
        expect(m.tfjs.gflops).toBeGreaterThan(0);
        expect(m.tiled.gflops).toBeGreaterThan(0);
        expect(m.register.gflops).toBeGreaterThan(0);
        const best = Math.max(1, m.tiledSpeedup, m.registerSpeedup);
        expect(m.faster).toBe(best === 1 ? 'tfjs' : best === m.tiledSpeedup ? 'tiled' : 'register');
        expect(m.relDiff).toBeLessThan(1e-5);
      }
      const md = readFileSync(join(dir, 'gpu.md'), 'utf8');
      expect(md).toContain('| tiny | 0.4 M | 2 | 16 |');
      expect(md).toContain('| tiny | qkv | 1024 x 128 x 384 |');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 300_000);
});
