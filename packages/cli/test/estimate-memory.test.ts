import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { createGPT, gptConfig } from '@zeroring/gpt';
import { uniqueParams, paramCount } from '@zeroring/train';
import {
  activationBytesPerWindow,
  blockActivationBytesPerWindow,
  parseParamCount,
} from '../src/commands/estimate-memory.ts';

const root = fileURLToPath(new URL('../../../', import.meta.url));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function zeroring(...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['packages/cli/bin/zeroring.js', 'estimate-memory', ...args],
      { cwd: root, timeout: 90_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

interface Row {
  strategy: string;
  offload: boolean;
  device: { params: number; grads: number; optimizer: number; total: number };
  host: { params: number; grads: number; optimizer: number; total: number };
}
interface Out {
  params: number;
  nproc: number;
  shardParams: number;
  model?: { name: string; vocabSize: number; params: number; shardParams: number };
  estimates: Row[];
}

describe('zeroring estimate-memory', () => {
  it('parses 1.5M / 10M / 1B / 350k / plain / exponent forms and rejects others', () => {
    expect(parseParamCount('1.5M')).toBe(1_500_000);
    expect(parseParamCount('10M')).toBe(10_000_000);
    expect(parseParamCount('1B')).toBe(1_000_000_000);
    expect(parseParamCount('350k')).toBe(350_000);
    expect(parseParamCount('124000000')).toBe(124_000_000);
    expect(parseParamCount('1e6')).toBe(1_000_000);
    for (const bad of ['', '0', '-5M', '1.5', '1.2345K', '10X', 'M'])
      expect(() => parseParamCount(bad)).toThrow(/expected a whole parameter count/);
  });

  it("the blocks' activation shares add up to the model's bytes per window", () => {
    for (const preset of ['tiny', 'small', 'gpt2'] as const) {
      const model = createGPT(gptConfig(preset, 89));
      const sum = model.blocks.reduce((a, b) => a + blockActivationBytesPerWindow(model.config, b.name), 0);
      expect(sum).toBe(activationBytesPerWindow(model.config));
      expect(blockActivationBytesPerWindow(model.config, 'h0')).toBeGreaterThan(0);
    }
  });

  it('--params --json gives the ZeRO formulas per strategy, with and without offload', async () => {
    const [a, b] = await Promise.all([
      zeroring('--params', '10M', '--nproc', '4', '--json'),
      zeroring('--params', '1.5M', '--nproc', '3', '--json'),
    ]);
    expect(a.code, a.stderr).toBe(0);
    expect(b.code, b.stderr).toBe(0);
    for (const [run, psi, n] of [
      [a, 10e6, 4],
      [b, 1.5e6, 3],
    ] as const) {
      const out = JSON.parse(run.stdout) as Out;
      expect([out.params, out.nproc, out.shardParams]).toEqual([psi, n, psi / n]);
      const dev = (s: string, off: boolean): number =>
        out.estimates.find((r) => r.strategy === s && r.offload === off)!.device.total;
      const host = (s: string, off: boolean): number =>
        out.estimates.find((r) => r.strategy === s && r.offload === off)!.host.total;
      expect(out.estimates).toHaveLength(8);
      expect(dev('ddp', false)).toBe(16 * psi);
      expect(dev('zero1', false)).toBe(8 * psi + (8 * psi) / n);
      expect(dev('zero2', false)).toBe(4 * psi + (12 * psi) / n);
      expect(dev('zero3', false)).toBe((16 * psi) / n);
      expect(dev('zero3', true)).toBe((8 * psi) / n);
      expect(host('zero2', true)).toBe((16 * psi) / n);
      for (const r of out.estimates) if (r.offload) expect(r.device.optimizer).toBe(0);
    }
  });

  it('--model counts the GPT preset from its param specs and uses the partition shard', async () => {
    const [tiny, small] = await Promise.all([
      zeroring('--model', 'tiny', '--vocab-size', '65', '--nproc', '3', '--json'),
      zeroring('--model', 'small', '--nproc', '2', '--json'),
    ]);
    expect(tiny.code, tiny.stderr).toBe(0);
    expect(small.code, small.stderr).toBe(0);
    const t = JSON.parse(tiny.stdout) as Out;
    const expected = uniqueParams(createGPT(gptConfig('tiny', 65))).reduce((a, p) => a + paramCount(p), 0);
    expect(t.params).toBe(expected);
    expect(t.model).toMatchObject({ name: 'tiny', vocabSize: 65, params: expected });
    // Per-block padding: at least ceil(Ψ/N), at most N-1 extra elements per block.
    expect(t.shardParams).toBeGreaterThanOrEqual(Math.ceil(expected / 3));
    expect(t.shardParams * 3 - expected).toBeLessThan(3 * 4); // 4 blocks: embed, h0, h1, head
    expect(t.estimates.find((r) => r.strategy === 'zero3' && !r.offload)!.device.total).toBe(16 * t.shardParams);
    // Default vocabulary: the Moby Dick corpus, as `zeroring train --model small` uses.
    const s = JSON.parse(small.stdout) as Out;
    expect(s.model!.vocabSize).toBeGreaterThan(50);
    expect(s.params).toBe(
      uniqueParams(createGPT(gptConfig('small', s.model!.vocabSize))).reduce((a, p) => a + paramCount(p), 0),
    );
  });

  it('--model gpt2 --batch-size adds the activations per window and per rank', async () => {
    const [json, text] = await Promise.all([
      zeroring('--model', 'gpt2', '--vocab-size', '89', '--nproc', '1', '--batch-size', '16', '--json'),
      zeroring('--model', 'gpt2', '--vocab-size', '89', '--nproc', '1', '--batch-size', '16'),
    ]);
    expect(json.code, json.stderr).toBe(0);
    const out = JSON.parse(json.stdout) as Out & {
      activations: { batchSize: number; bytesPerWindow: number; keptBytes: number; recomputedBytes: number };
    };
    expect(out.model).toMatchObject({ name: 'gpt2', vocabSize: 89 });
    expect(out.params).toBeGreaterThan(84e6);
    expect(out.params).toBeLessThan(86e6);
    // 4 bytes x T 256 x (12 layers x 18 C + 4 V + 3 C) with C 768, H 12, V 89.
    expect(out.activations.bytesPerWindow).toBe(4 * 256 * (12 * 18 * 768 + 4 * 89 + 3 * 768));
    expect(out.activations.keptBytes).toBe(16 * out.activations.bytesPerWindow);
    expect(out.activations.recomputedBytes).toBeLessThan(out.activations.keptBytes / 4);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/Activations per rank at batch 16/);
    expect(text.stdout).toMatch(/ddp, zero1, zero2: 2\.57 GiB/);
  });

  it('prints a table with human units', async () => {
    const r = await zeroring('--params', '1B', '--nproc', '8');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/1\.00B params, 8 rank\(s\)/);
    const lines = r.stdout.split('\n');
    const row = (s: string, off: string): string => lines.find((l) => new RegExp(`^\\s+${s}\\s+${off}\\s`).test(l))!;
    // 16Ψ = 16e9 bytes = 14.90 GiB; ZeRO-3 16Ψ/8 = 1.86 GiB; offloaded ZeRO-3 keeps 8Ψ/8 on the device.
    expect(row('ddp', 'no')).toMatch(/14\.90 GiB\s+0 B/);
    expect(row('zero3', 'no')).toMatch(/1\.86 GiB\s+0 B/);
    expect(row('zero3', 'yes')).toMatch(/953\.67 MiB\s+1\.86 GiB/);
  });

  it('fails with a clear message on bad or missing input', async () => {
    const runs = await Promise.all([
      zeroring('--params', '10X', '--nproc', '2'),
      zeroring('--nproc', '2'),
      zeroring('--params', '1M', '--model', 'tiny', '--nproc', '2'),
      zeroring('--params', '1M', '--nproc', '0'),
      zeroring('--model', 'huge', '--nproc', '2'),
    ]);
    for (const r of runs) expect(r.code).not.toBe(0);
    expect(runs[0]!.stderr).toMatch(/--params <P>' argument '10X' is invalid\. expected a whole parameter count/);
    expect(runs[1]!.stderr).toMatch(/give --params P or --model tiny\|small/);
    expect(runs[2]!.stderr).toMatch(/cannot be used with/);
    expect(runs[3]!.stderr).toMatch(/--nproc as an integer >= 1, got "0"/);
    expect(runs[4]!.stderr).toMatch(/huge/);
  });
});
