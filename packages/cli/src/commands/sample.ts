// `zeroring sample --checkpoint DIR`: generate text from a trained GPT. DIR is a run's --out
// directory (the newest complete checkpoint in DIR/checkpoints is used) or one checkpoint
// directory; the checkpoint carries the model configuration, the tokenizer and the full
// parameters (model.bin), so no strategy or world size is involved.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { initBackend, BACKEND_KINDS, type BackendKind } from '@zeroring/backend';
import { getLogger } from '@zeroring/core';
import { CharTokenizer, createGPT, type CharTokenizerJSON, type GPTConfig } from '@zeroring/gpt';
import { readConsolidated, readModelParams, resolveCheckpointDir } from '@zeroring/train';
import { sampleText } from '../train-job.ts';
import { examples } from '../help.ts';

interface SampleFlags {
  checkpoint: string;
  prompt: string;
  temperature: number;
  topK?: number;
  maxNewTokens: number;
  seed: number;
  backend: BackendKind;
}

function num(name: string, min: number, integer: boolean) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isFinite(n) || n < min || (integer && !Number.isInteger(n))) {
      throw new InvalidArgumentError(`${name} '${value}' is not ${integer ? 'an integer' : 'a number'} >= ${min}`);
    }
    return n;
  };
}

export async function runSample(flags: SampleFlags): Promise<string> {
  const log = getLogger({ cmd: 'sample' });
  await initBackend(flags.backend, { logger: log });
  // A file from `zeroring consolidate` carries config, tokenizer and parameters in one.
  const merged = await readConsolidated(flags.checkpoint);
  if (merged) {
    const cfg = merged.config?.modelConfig as GPTConfig | undefined;
    if (!cfg || !merged.tokenizer)
      throw new InvalidArgumentError(
        `${flags.checkpoint} has no model config or tokenizer, expected ` +
          'a file from zeroring consolidate of a zeroring train checkpoint',
      );
    const o = {
      prompt: flags.prompt,
      maxNewTokens: flags.maxNewTokens,
      temperature: flags.temperature,
      topK: flags.topK,
      seed: flags.seed,
    };
    return sampleText(createGPT(cfg), CharTokenizer.fromJSON(merged.tokenizer as CharTokenizerJSON), merged.params, o);
  }
  const dir = await resolveCheckpointDir(flags.checkpoint, (m) => log.warn(m));
  const config = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as { modelConfig?: GPTConfig };
  if (!config.modelConfig)
    throw new InvalidArgumentError(
      `${dir}/config.json has no modelConfig, expected a checkpoint written by zeroring train`,
    );
  const tokenizer = CharTokenizer.fromJSON(
    JSON.parse(await readFile(join(dir, 'tokenizer.json'), 'utf8')) as CharTokenizerJSON,
  );
  const model = createGPT(config.modelConfig);
  const params = await readModelParams(dir);
  log.info({ checkpoint: dir }, `sampling from ${dir}`);
  return sampleText(model, tokenizer, params, {
    prompt: flags.prompt,
    maxNewTokens: flags.maxNewTokens,
    temperature: flags.temperature,
    topK: flags.topK,
    seed: flags.seed,
  });
}

export function registerSample(program: Command): void {
  program
    .command('sample')
    .description('generate text from a checkpoint of zeroring train')
    .addHelpText(
      'after',
      examples(
        'zeroring sample --checkpoint runs/tiny',
        "zeroring sample --checkpoint runs/tiny --prompt 'Call me Ishmael' --temperature 0.6 --top-k 20",
      ),
    )
    .requiredOption(
      '--checkpoint <dir>',
      "a run's --out directory, one checkpoint directory, or a file from zeroring consolidate",
    )
    .option('--prompt <text>', 'text to continue', 'Call me')
    .option('--temperature <t>', 'softmax temperature (0: greedy)', num('--temperature', 0, false), 0.8)
    .option('--top-k <k>', 'sample among the k most likely characters', num('--top-k', 1, true))
    .option('--max-new-tokens <n>', 'characters to generate', num('--max-new-tokens', 0, true), 300)
    .option('--seed <n>', 'sampling seed', num('--seed', 0, true), 0)
    .addOption(
      new Option('--backend <name>', 'tfjs backend (auto: the fastest here, as for train)')
        .choices(BACKEND_KINDS)
        .default('auto'),
    )
    .action(async (flags: SampleFlags) => {
      const text = await runSample(flags);
      process.stdout.write(text + '\n');
    });
}
