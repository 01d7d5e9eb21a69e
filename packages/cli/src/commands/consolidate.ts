// `zeroring consolidate CHECKPOINT_DIR --out FILE [--params-only]`: merge a checkpoint's per-rank
// shards into one file (DeepSpeed's zero_to_fp32 and universal checkpoint). CHECKPOINT_DIR is a
// run's --out directory (its newest complete checkpoint is used) or one checkpoint directory; it
// is verified whole first. The file holds every parameter with both AdamW moments, the step and
// the run's config, tokenizer and trainer state, so `zeroring train --resume-from FILE` goes on
// from it at any world size and `zeroring sample --checkpoint FILE` needs nothing else;
// --params-only keeps just what sampling needs (consolidated.ts in @zeroring/train).
import { resolve } from 'node:path';
import { type Command } from 'commander';
import { getLogger } from '@zeroring/core';
import { consolidateCheckpoint, writeFileAtomic } from '@zeroring/train';
import { examples } from '../help.ts';

export function registerConsolidate(program: Command): void {
  program
    .command('consolidate')
    .description("merge a checkpoint's per-rank shards into one file (resumable at any world size, or for sample)")
    .addHelpText(
      'after',
      examples(
        'zeroring train --nproc 2 --strategy zero3 --out runs/z3',
        'zeroring consolidate runs/z3 --out runs/z3/model.zrc',
        'zeroring sample --checkpoint runs/z3/model.zrc',
        'zeroring train --nproc 3 --strategy zero1 --steps 400 --resume-from runs/z3/model.zrc --out runs/z1',
        'zeroring consolidate runs/z3 --params-only --out runs/z3/params.zrc',
      ),
    )
    .argument('<checkpoint-dir>', "a run's --out directory or one checkpoint directory")
    .requiredOption('--out <file>', 'the consolidated file to write')
    .option('--params-only', 'only the parameters (what sample needs), without the optimizer state', false)
    .action(async (path: string, flags: { out: string; paramsOnly: boolean }) => {
      const log = getLogger({ cmd: 'consolidate' });
      const { dir, bytes, model } = await consolidateCheckpoint(path, {
        paramsOnly: flags.paramsOnly,
        warn: (msg) => log.warn(msg),
      });
      await writeFileAtomic(resolve(flags.out), bytes);
      const count = [...model.params.values()].reduce((a, p) => a + p.length, 0);
      const what = flags.paramsOnly ? 'parameters' : 'parameters with their AdamW moments';
      log.info(
        { checkpoint: dir, out: flags.out, params: count, bytes: bytes.length },
        `consolidated ${model.worldSize} ${model.strategy} shard(s) of step ${model.step} from ` +
          `${dir}: ${model.params.size} tensors, ${count} ${what} -> ${flags.out}`,
      );
    });
}
