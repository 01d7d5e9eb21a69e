// Pipeline training through the real CLI (`zeroring train --pp P`): 2 and 3 stages (cut by parameter
// count, and by measured time), GPipe, 1F1B and interleaved 1F1B (2 model chunks per stage),
// and 2 pipelines of 2 stages with DDP or ZeRO-1 across them, each end where one process training
// the same global batch of 12 windows ends. The stages' gradients are the same sums (the tied
// embedding's two uses added on its first stage, the clip norm summed over the stages), so only
// float rounding separates them: the bound is checkpoint-reshard.test.ts's 5e-4 per tensor,
// the attention key bias in absolute terms. A pipeline's checkpoint resumes without a pipeline,
// and the memory accounting shows 1F1B holding at most P micro-batches' activations where GPipe
// holds M. A stage killed mid-run restarts the job from its checkpoint and ends bit-identical.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { leftovers, runCli } from './fixtures/cli.ts';
import { expectParamsClose, finalParams } from './fixtures/zero/expect-close.ts';

const root = mkdtempSync(join(tmpdir(), 'zr-pipeline-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const common =
  '--backend wasm --steps 6 --eval-interval 3 --eval-batches 2 --sample-tokens 0 --seed 11 --warmup-steps 1'.split(' ');
const metrics = (out: string): Array<Record<string, any>> =>
  readFileSync(join(out, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));

async function train(name: string, args: string[]): Promise<string> {
  const out = join(root, name);
  const r = await runCli(['train', ...args, ...common, '--out', out], { timeoutMs: 150_000 });
  expect(r.code, r.output).toBe(0);
  return out;
}

let reference: Map<string, Float32Array>;
let referenceVal: number;

describe('zeroring train --pp (real processes)', () => {
  beforeAll(async () => {
    // Micro-batches of 3 windows, as most pipeline runs here: the same validation set (evalBatches x 3 windows).
    const out = await train('reference', ['--nproc', '1', '--batch-size', '3', '--grad-accum', '4']);
    reference = finalParams(out, 6);
    referenceVal = metrics(out).at(-1)!.valLoss;
  }, 150_000);

  const runs: Array<[string, string[]]> = [
    [
      '2 stages, GPipe',
      ['--nproc', '2', '--pp', '2', '--schedule', 'gpipe', '--micro-batches', '4', '--batch-size', '3'],
    ],
    [
      '2 stages, 1F1B',
      ['--nproc', '2', '--pp', '2', '--schedule', '1f1b', '--micro-batches', '4', '--batch-size', '3'],
    ],
    [
      '3 stages cut by measured time, GPipe',
      [
        '--nproc',
        '3',
        '--pp',
        '3',
        '--pp-balance',
        'time',
        '--schedule',
        'gpipe',
        '--micro-batches',
        '6',
        '--batch-size',
        '2',
      ],
    ],
    [
      '3 stages, 1F1B',
      ['--nproc', '3', '--pp', '3', '--schedule', '1f1b', '--micro-batches', '6', '--batch-size', '2'],
    ],
    [
      '2 stages x 2 chunks, interleaved 1F1B',
      ['--nproc', '2', '--pp', '2', '--schedule', 'interleaved', '--micro-batches', '4', '--batch-size', '3'],
    ],
    ['2 pipelines x 2 stages, DDP', ['--nproc', '4', '--pp', '2', '--micro-batches', '3', '--batch-size', '2']],
    [
      '2 pipelines x 2 stages, ZeRO-1',
      ['--nproc', '4', '--pp', '2', '--strategy', 'zero1', '--micro-batches', '2', '--batch-size', '3'],
    ],
  ];
  for (const [name, args] of runs) {
    it(`${name} ends with the parameters of one process`, async () => {
      const out = await train(name.replace(/[^a-z0-9]+/gi, '-'), args);
      expectParamsClose(finalParams(out, 6), reference);
      const last = metrics(out).at(-1)!;
      // Validation goes forward through the stages: the same loss as one process's on the same set.
      if (args[args.indexOf('--batch-size') + 1] === '3')
        expect(Math.abs(last.valLoss - referenceVal)).toBeLessThan(1e-3);
      const pp = Number(args[args.indexOf('--pp') + 1]);
      expect(last.pipeline.stages).toHaveLength(pp);
      const chunks = args.includes('interleaved') ? 2 : 1;
      expect(last.pipeline.timeline[0]).toHaveLength(2 * chunks * Number(args[args.indexOf('--micro-batches') + 1]));
    }, 150_000);
  }

  it("1F1B holds at most P micro-batches' activations per stage, GPipe all M (memory accounting)", async () => {
    const args = ['--nproc', '2', '--pp', '2', '--micro-batches', '6', '--batch-size', '2'];
    const gpipe = metrics(await train('memory-gpipe', [...args, '--schedule', 'gpipe'])).at(-1)!.pipeline;
    const ofob = metrics(await train('memory-1f1b', [...args, '--schedule', '1f1b'])).at(-1)!.pipeline;
    for (let s = 0; s < 2; s++) {
      const perMicro = gpipe.stages[s].peakActivationBytes / 6;
      expect(gpipe.stages[s].peakLive).toBe(6);
      expect(ofob.stages[s].peakLive).toBe(2 - s);
      expect(ofob.stages[s].peakActivationBytes).toBeLessThanOrEqual((2 - s) * perMicro * 1.01);
    }
  }, 150_000);

  it('a pipeline checkpoint resumes without a pipeline, at another world size', async () => {
    const out = join(root, 'resume');
    const first = ['--nproc', '2', '--pp', '2', '--micro-batches', '4', '--batch-size', '3', '--stop-after', '3'];
    const a = await runCli(['train', ...first, ...common, '--checkpoint-interval', '3', '--out', out], {
      timeoutMs: 150_000,
    });
    expect(a.code, a.output).toBe(0);
    const b = await runCli(['train', '--nproc', '3', '--batch-size', '4', '--resume', ...common, '--out', out], {
      timeoutMs: 150_000,
    });
    expect(b.code, b.output).toBe(0);
    expect(b.output).toMatch(/resumed at step 3 .*saved by 2 [a-z-]+ rank/);
    expectParamsClose(finalParams(out, 6), reference);
  }, 300_000);

  it('a stage killed mid-run: the job restarts from its checkpoint and ends bit-identical', async () => {
    const flags = [
      '--nproc',
      '2',
      '--pp',
      '2',
      '--micro-batches',
      '4',
      '--batch-size',
      '3',
      '--checkpoint-interval',
      '2',
    ];
    const plain = join(root, 'kill-plain');
    const killed = join(root, 'kill-restart');
    const [a, b] = await Promise.all([
      runCli(['train', ...flags, ...common, '--steps', '4', '--out', plain], { timeoutMs: 150_000 }),
      runCli(['train', ...flags, ...common, '--steps', '4', '--out', killed, '--max-restarts', '1'], {
        timeoutMs: 150_000,
        env: { ZERORING_FAULT_KILL_AT_STEP: '3', ZERORING_TIMEOUT_MS: '60000' },
      }),
    ]);
    expect(a.code, a.output).toBe(0);
    expect(b.code, b.output).toBe(0);
    expect(b.output).toMatch(/after rank 1 failed with signal SIGKILL/);
    expect(b.output).toMatch(/resuming from the newest complete checkpoint/);
    const step4 = (dir: string, f: string) => readFileSync(join(dir, 'checkpoints', 'step-00000004', f));
    for (const f of ['model.bin', 'shard-rank0.bin', 'shard-rank1.bin'])
      expect(step4(killed, f).equals(step4(plain, f)), f).toBe(true);
    expect(await leftovers(b.marker)).toEqual([]);
  }, 300_000);

  it('refuses what a pipeline cannot run, before starting workers', async () => {
    const r = await runCli(['train', '--nproc', '3', '--pp', '2', ...common], { timeoutMs: 30_000 });
    expect(r.code).not.toBe(0);
    expect(r.output).toMatch(/--pp 2 needs a world size divisible by it, got 3/);
    const z = await runCli(['train', '--nproc', '2', '--pp', '2', '--strategy', 'zero3', ...common], {
      timeoutMs: 30_000,
    });
    expect(z.code).not.toBe(0);
    expect(z.output).toMatch(/--pp 2 does not take --strategy zero3/);
    const i = await runCli(
      ['train', '--nproc', '2', '--pp', '2', '--schedule', 'interleaved', '--micro-batches', '3', ...common],
      {
        timeoutMs: 30_000,
      },
    );
    expect(i.code).not.toBe(0);
    expect(i.output).toMatch(/--schedule interleaved needs --micro-batches a multiple of --pp 2/);
  }, 60_000);
});
