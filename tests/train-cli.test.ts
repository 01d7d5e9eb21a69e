// `zeroring train` and `zeroring sample` as a user runs them: the real CLI in a child process,
// writing the DESIGN.md files, then sampling from the checkpoint it left; `--resume` continues.
import { afterAll, describe, expect, it } from 'vitest';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from './fixtures/once.ts';
import { runCli } from './fixtures/cli.ts';

const root = mkdtempSync(join(tmpdir(), 'zr-cli-train-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const common = (
  '--backend wasm --batch-size 2 --eval-interval 2 ' + '--eval-batches 1 --sample-tokens 20 --seed 3'
).split(' ');

/** A run directory copied from `from`: a test that changes a run works on its own copy. */
function copyRun(from: string, name: string): string {
  const dir = join(root, name);
  cpSync(from, dir, { recursive: true });
  return dir;
}

// The runs the tests share, each made once by the first test that needs it: a 4-step run stopped
// after step 3, and a copy of it resumed to its last step.
const interrupted = once(async () => {
  const dir = join(root, 'interrupted');
  return { dir, ...(await runCli(['train', '--steps', '4', '--stop-after', '3', '--out', dir, ...common])) };
});
const resumed = once(async () => {
  const from = await interrupted();
  if (from.code !== 0) throw new Error(`the interrupted run failed:\n${from.stderr}`);
  const dir = copyRun(from.dir, 'resumed');
  return { dir, ...(await runCli(['train', '--steps', '4', '--resume', '--out', dir, ...common])) };
});

describe('zeroring train / sample (CLI)', () => {
  it('trains a few steps into --out with metrics.jsonl, summary.json, events.jsonl and a checkpoint', async () => {
    const { dir: out, ...r } = await interrupted();
    expect(r.code, r.stderr).toBe(0);
    const metrics = readFileSync(join(out, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(metrics.map((m) => m.step)).toEqual([1, 2, 3]);
    expect(metrics[0]).toMatchObject({ step: 1, commMs: 0 });
    expect(metrics[0].memory.params.device).toBeGreaterThan(0);
    const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
    expect(summary).toMatchObject({
      steps: 3,
      strategy: 'local',
      worldSize: 1,
      config: { model: 'tiny', backend: 'wasm' },
    });
    expect(summary.paramCount).toBeGreaterThan(100_000);
    expect(summary.paramChecksum).toBeGreaterThan(0);
    expect(summary.memory.modelStateBytes).toBe(16 * summary.paramCount);
    expect(existsSync(join(out, 'events.jsonl'))).toBe(true);
    for (const f of 'manifest.json model.bin shard-rank0.bin tokenizer.json config.json trainer.json'.split(' ')) {
      expect(existsSync(join(out, 'checkpoints', 'step-00000003', f)), f).toBe(true);
    }
    expect(r.stderr).toMatch(/val loss/);
    expect(r.stdout).toContain('--- sample ---');
  });

  it('samples from that checkpoint', async () => {
    const run = await interrupted();
    expect(run.code, run.stderr).toBe(0);
    const r = await runCli([
      'sample',
      '--checkpoint',
      run.dir,
      '--prompt',
      'Call me',
      '--max-new-tokens',
      '15',
      '--top-k',
      '5',
      '--backend',
      'wasm',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const text = r.stdout.replace(/\n$/, ''); // the command adds one newline; generated text may end in whitespace
    expect(text.startsWith('Call me')).toBe(true);
    expect(Array.from(text).length).toBe('Call me'.length + 15);
  });

  it('resumes the interrupted run to its last step', async () => {
    const { dir: out, ...r } = await resumed();
    expect(r.code, r.stderr).toBe(0);
    const metrics = readFileSync(join(out, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(metrics.map((m) => m.step)).toEqual([1, 2, 3, 4]);
    expect(JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'))).toMatchObject({ steps: 4, resumedFrom: 3 });
  }, 300_000);

  it('resumes a finished run without changing it, and trains on to a larger --steps keeping its figures', async () => {
    const finished = await resumed();
    expect(finished.code, finished.stderr).toBe(0);
    const out = copyRun(finished.dir, 'finished');
    const summaryPath = join(out, 'summary.json');
    const before = readFileSync(summaryPath, 'utf8');
    const r = await runCli(['train', '--steps', '4', '--resume', '--out', out, ...common]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/already finished its 4 steps; nothing to do/);
    expect(r.stdout).not.toContain('--- sample ---');
    expect(readFileSync(summaryPath, 'utf8')).toBe(before);
    const longer = await runCli(['train', '--steps', '5', '--resume', '--out', out, ...common]);
    expect(longer.code, longer.stderr).toBe(0);
    const summary = JSON.parse(readFileSync(summaryPath, 'utf8'));
    expect(summary).toMatchObject({ steps: 5, resumedFrom: 4 });
    expect(summary.finalLoss).toBeGreaterThan(0);
    expect(summary.tokensPerSec).toBeGreaterThan(0);
    expect(summary.initialValLoss).toBe(JSON.parse(before).initialValLoss);
    expect(summary.initialValLoss).toBeGreaterThan(0);
  }, 300_000);

  it('samples with the fastest backend by default, as train does', async () => {
    const run = await interrupted();
    expect(run.code, run.stderr).toBe(0);
    const r = await runCli(['sample', '--checkpoint', run.dir, '--max-new-tokens', '5']);
    expect(r.code, r.stderr).toBe(0);
    const chosen = r.stderr
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l))
      .find((l) => l.backend);
    expect(chosen).toMatchObject({ backend: 'wasm', reason: expect.stringMatching(/^auto: /) });
  });

  it('rejects --resume without checkpoints, naming the directory', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'zr-cli-empty-'));
    try {
      const r = await runCli(['train', '--steps', '2', '--resume', '--out', empty, ...common]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain('no complete checkpoint under');
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });
});
