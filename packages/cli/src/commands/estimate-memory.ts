// `zeroring estimate-memory (--params P | --model tiny|small) --nproc N [--json]`
//
// Prints the expected per-rank model-state bytes for every strategy, without and with optimizer
// offload: the table DeepSpeed's estimate_zero2/3_model_states_mem_needs give, from the formulas
// in @zeroring/train's memory.ts. With --model the parameter count and each rank's shard come from
// the real GPT preset and the real partition (so per-block padding is included); the preset's
// vocabulary is the corpus's (Moby Dick unless --data or --vocab-size says otherwise), as in
// `zeroring train`.
import { Command, InvalidArgumentError, Option } from 'commander';
import { estimateMemory, formatBytes, type MemoryEstimate } from '@zeroring/train';
import { FlatPartition } from '@zeroring/train';
import { examples } from '../help.ts';

const SUFFIX: Record<string, number> = { '': 1, k: 1e3, m: 1e6, b: 1e9, g: 1e9, t: 1e12 };

/** "1.5M", "10M", "1B", "350k", "124000000", "1e6" → a parameter count. */
export function parseParamCount(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?(?:e\d+)?)\s*([kmbgt]?)\s*$/i.exec(text);
  const value = match ? Number(match[1]) * SUFFIX[match[2]!.toLowerCase()]! : Number.NaN;
  const rounded = Math.round(value);
  if (!Number.isSafeInteger(rounded) || rounded < 1 || Math.abs(value - rounded) > 1e-6 * value) {
    throw new InvalidArgumentError(
      `expected a whole parameter count >= 1 such as 1.5M, 10M, 1B, 350K or 124000000, got ${JSON.stringify(text)}`,
    );
  }
  return rounded;
}

function parsePositiveInt(what: string) {
  return (text: string): number => {
    const n = Number(text);
    if (!/^\s*\d+\s*$/.test(text) || !Number.isSafeInteger(n) || n < 1)
      throw new InvalidArgumentError(`expected ${what} as an integer >= 1, got ${JSON.stringify(text)}`);
    return n;
  };
}

interface Options {
  params?: number;
  model?: 'tiny' | 'small';
  nproc: number;
  data?: string;
  vocabSize?: number;
  json?: boolean;
}

interface ModelCount {
  name: string;
  vocabSize: number;
  params: number;
  shardParams: number;
}

/** Parameter count and rank shard of a GPT preset, from its param specs and the real partition. */
async function countModel(
  preset: 'tiny' | 'small',
  nproc: number,
  data: string | undefined,
  vocab: number | undefined,
): Promise<ModelCount> {
  const gpt = await import('@zeroring/gpt');
  const vocabSize = vocab ?? gpt.CharTokenizer.fromText(gpt.loadCorpus(data)).vocabSize;
  const model = gpt.createGPT(gpt.gptConfig(preset, vocabSize));
  const part = FlatPartition.fromModel(model, nproc);
  return { name: preset, vocabSize, params: part.numel, shardParams: part.shardLength };
}

const human = (n: number): string =>
  n >= 1e9
    ? `${(n / 1e9).toFixed(2)}B`
    : n >= 1e6
      ? `${(n / 1e6).toFixed(2)}M`
      : n >= 1e3
        ? `${(n / 1e3).toFixed(2)}K`
        : String(n);

function table(rows: MemoryEstimate[]): string {
  const head = [
    'strategy',
    'offload',
    'device/rank',
    'host/rank',
    'device: params + grads + optimizer',
    'host: params + grads + optimizer',
  ];
  const body = rows.map((r) => [
    r.strategy,
    r.offload ? 'yes' : 'no',
    formatBytes(r.device.total),
    formatBytes(r.host.total),
    [r.device.params, r.device.grads, r.device.optimizer].map(formatBytes).join(' + '),
    r.host.total === 0 ? '-' : [r.host.params, r.host.grads, r.host.optimizer].map(formatBytes).join(' + '),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]): string =>
    '  ' +
    cells
      .map((c, i) => (i >= 2 && i <= 3 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n');
}

export function registerEstimateMemory(program: Command): void {
  program
    .command('estimate-memory')
    .description(
      'expected per-rank model-state memory (fp32 params, grads, ' +
        'Adam) for DDP and ZeRO-1/2/3, with and without offload',
    )
    .addHelpText(
      'after',
      examples(
        'zeroring estimate-memory --params 1.5B --nproc 8',
        'zeroring estimate-memory --model small --nproc 4 --json',
      ),
    )
    .addOption(
      new Option('--params <P>', 'parameter count, e.g. 1.5M, 10M, 1B').argParser(parseParamCount).conflicts('model'),
    )
    .addOption(new Option('--model <name>', 'count the parameters of a GPT preset').choices(['tiny', 'small']))
    .requiredOption('--nproc <N>', 'number of ranks', parsePositiveInt('--nproc'))
    .option('--data <FILE>', 'with --model: corpus whose characters set the vocabulary (default Moby Dick)')
    .option('--vocab-size <V>', 'with --model: vocabulary size instead of the corpus', parsePositiveInt('--vocab-size'))
    .option('--json', 'print JSON instead of a table')
    .action(async (opts: Options, cmd: Command) => {
      if (opts.params === undefined && opts.model === undefined)
        cmd.error('error: give --params P or --model tiny|small');
      const model =
        opts.model !== undefined ? await countModel(opts.model, opts.nproc, opts.data, opts.vocabSize) : undefined;
      const params = model?.params ?? opts.params!;
      const shardParams = model?.shardParams ?? Math.ceil(params / opts.nproc);
      const rows = estimateMemory({ params, nproc: opts.nproc, shardParams });
      if (opts.json) {
        process.stdout.write(
          JSON.stringify({ params, nproc: opts.nproc, shardParams, model, estimates: rows }, null, 2) + '\n',
        );
        return;
      }
      const what = model
        ? `GPT ${model.name} (vocab ${model.vocabSize}): ${human(params)} params`
        : `${human(params)} params`;
      process.stdout.write(
        [
          `Estimated model-state memory per rank: fp32 params and grads, Adam moments (16 bytes/param unsharded)`,
          `  ${what}, ${opts.nproc} rank(s), ${human(shardParams)} params owned per rank`,
          `  not included: activations, gathered blocks in flight, communication buffers, framework overhead`,
          '',
          table(rows),
          '',
        ].join('\n'),
      );
    });
}
