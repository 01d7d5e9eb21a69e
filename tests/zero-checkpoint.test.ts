// ZeRO checkpoints as a user meets them, through the real CLI: `zeroring train --nproc 2
// --strategy zero2|zero3 --offload` saves one shard per rank; a run stopped after 2 of 4 steps
// and resumed with --resume ends bit-identical to the uninterrupted run (every rank's shard file
// and the full parameters byte for byte); `zeroring consolidate` merges the shards into one file
// whose parameters equal the full parameters, and `zeroring sample` reads that file and writes the same text
// as from the checkpoint directory.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeShard, readConsolidated } from '@zeroring/train';
import { runCli } from './fixtures/cli.ts';

const root = mkdtempSync(join(tmpdir(), 'zr-zero-ckpt-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const common = (
  '--nproc 2 --offload --backend wasm --steps 4 --batch-size 2 ' +
  '--eval-interval 2 --eval-batches 2 --sample-tokens 0 --seed 7 --warmup-steps 1'
).split(' ');
const final = (out: string, file: string): Buffer => readFileSync(join(out, 'checkpoints', 'step-00000004', file));

describe('ZeRO checkpoints: bit-identical resume, consolidate, sample (real CLI, 2 ranks, offload)', () => {
  for (const strategy of ['zero2', 'zero3']) {
    it(`${strategy} --offload`, async () => {
      const whole = join(root, `${strategy}-whole`);
      const parts = join(root, `${strategy}-resumed`);
      const a = await runCli(['train', '--strategy', strategy, '--out', whole, ...common]);
      expect(a.code, a.output).toBe(0);
      const b1 = await runCli(['train', '--strategy', strategy, '--stop-after', '2', '--out', parts, ...common]);
      expect(b1.code, b1.output).toBe(0);
      const b2 = await runCli(['train', '--strategy', strategy, '--resume', '--out', parts, ...common]);
      expect(b2.code, b2.output).toBe(0);

      const sumA = JSON.parse(readFileSync(join(whole, 'summary.json'), 'utf8'));
      const sumB = JSON.parse(readFileSync(join(parts, 'summary.json'), 'utf8'));
      expect(sumB.resumedFrom).toBe(2);
      expect(sumA.strategy).toBe(strategy);
      expect(sumB.paramChecksum).toBe(sumA.paramChecksum);
      for (const f of ['model.bin', 'shard-rank0.bin', 'shard-rank1.bin'])
        expect(final(parts, f).equals(final(whole, f)), f).toBe(true);
      // Each rank's file holds its pieces only: half the parameters (no padding), with offload recorded.
      const shard = decodeShard(final(parts, 'shard-rank1.bin'));
      expect(shard.meta).toMatchObject({ strategy, offload: true, rank: 1, worldSize: 2, t: 4 });
      expect(shard.arrays.get('param')!.length).toBeLessThan(0.51 * sumA.paramCount);
      expect(shard.arrays.get('v')!.length).toBe(shard.arrays.get('param')!.length);

      const file = join(root, `${strategy}.bin`);
      const c = await runCli(['consolidate', parts, '--out', file]);
      expect(c.code, c.output).toBe(0);
      const merged = (await readConsolidated(file))!;
      expect(merged).toMatchObject({ step: 4, strategy, worldSize: 2 });
      const full = decodeShard(final(parts, 'model.bin'));
      expect([...merged.params.keys()].sort()).toEqual([...full.arrays.keys()].sort());
      for (const [name, values] of full.arrays)
        expect(Buffer.from(merged.params.get(name)!.slice().buffer).equals(Buffer.from(values.buffer)), name).toBe(
          true,
        );

      const sampleArgs = ['--max-new-tokens', '24', '--seed', '3', '--prompt', 'Call'];
      const fromFile = await runCli(['sample', '--checkpoint', file, ...sampleArgs]);
      expect(fromFile.code, fromFile.output).toBe(0);
      const fromDir = await runCli(['sample', '--checkpoint', parts, ...sampleArgs]);
      expect(fromDir.code, fromDir.output).toBe(0);
      expect(fromFile.stdout.trim().length).toBeGreaterThan(4);
      expect(fromFile.stdout).toBe(fromDir.stdout);
    }, 600_000);
  }
});
