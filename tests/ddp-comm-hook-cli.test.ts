// `zeroring train --nproc 2 --comm-hook X` as a user runs it, for each hook: two workers train the
// tiny GPT on wasm with DDP averaging its buckets through the hook, end with finite, falling loss,
// and record the hook in summary.json's config. --comm-hook with a ZeRO strategy, and
// --powersgd-* without --comm-hook powersgd, are refused in one line naming the flag before any
// worker starts. (The hooks' math is tested in comm-hooks.test.ts, DDP's wiring of them in
// packages/train/test/ddp-comm-hook.test.ts.)
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from './fixtures/cli.ts';

const root = mkdtempSync(join(tmpdir(), 'zr-hook-cli-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const common = (
  '--nproc 2 --backend wasm --steps 5 --batch-size 4 --eval-interval 100 --eval-batches 1 ' +
  '--sample-tokens 0 --seed 3 --warmup-steps 1'
).split(' ');

describe('zeroring train --comm-hook', () => {
  for (const [hook, extra, recorded] of [
    ['bf16', [], {}],
    ['fp16', [], {}],
    // PowerSGD compresses from the third step on, at rank 2.
    ['powersgd', ['--powersgd-rank', '2', '--powersgd-start', '2'], { powerSGD: { rank: 2, startStep: 2 } }],
  ] as const) {
    it(`--comm-hook ${hook}: finite, falling loss; the hook in summary.json's config`, async () => {
      const out = join(root, hook);
      const r = await runCli(['train', ...common, '--comm-hook', hook, ...extra, '--out', out]);
      expect(r.code, r.output).toBe(0);
      const losses = readFileSync(join(out, 'metrics.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l).loss as number);
      expect(losses).toHaveLength(5);
      for (const l of losses) expect(Number.isFinite(l), `losses ${losses}`).toBe(true);
      expect(losses[4]!, `losses ${losses}`).toBeLessThan(losses[0]! - 0.5);
      const s = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
      expect(s).toMatchObject({ strategy: 'ddp', worldSize: 2, config: { commHook: hook, ...recorded } });
    }, 120_000);
  }

  it('is refused with --strategy zero2, and --powersgd-rank without --comm-hook powersgd', async () => {
    const zero = await runCli(['train', '--nproc', '2', '--strategy', 'zero2', '--comm-hook', 'bf16']);
    expect(zero.code).toBe(1);
    expect(zero.output).toMatch(/ConfigError: --comm-hook bf16 with --strategy zero2: .*expected --strategy ddp/);
    const rank = await runCli(['train', '--nproc', '2', '--comm-hook', 'fp16', '--powersgd-rank', '2']);
    expect(rank.code).toBe(1);
    expect(rank.output).toMatch(/ConfigError: --powersgd-rank 2 with --comm-hook fp16, expected --comm-hook powersgd/);
    // Refused before any worker started: no rank ever logged.
    for (const r of [zero, rank]) expect(r.output).not.toMatch(/\[rank \d\]/);
  }, 60_000);
});
