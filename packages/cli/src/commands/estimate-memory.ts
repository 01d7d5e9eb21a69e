// `zeroring estimate-memory (--params P | --model tiny|small|gpt2 [--batch-size B]) --nproc N [--json]`
//
// Prints the expected per-rank model-state bytes for every strategy, without and with optimizer
// offload: the table DeepSpeed's estimate_zero2/3_model_states_mem_needs give, from the formulas
// in @zeroring/train's memory.ts. With --model the parameter count and each rank's shard come from
// the real GPT preset and the real partition (so per-block padding is included); the preset's
// vocabulary is the corpus's (Moby Dick unless --data or --vocab-size says otherwise), as in
// `zeroring train`. With --batch-size it adds the activations a rank keeps for backward, which
// on a GPU usually decide the batch size rather than the model state (see activationBytesPerWindow).
// With --pp P --micro-batches M it estimates a pipeline instead: the blocks cut into P stages by
// parameter count (cutStages, as the executor cuts them), the schedule's timeline, and per stage
// its model state and its peak activations (peak live micro-batches x its blocks' bytes per window).
import { Command, InvalidArgumentError, Option } from 'commander';
import { presets, type GPTConfig, type PresetName } from '@zeroring/gpt';
import {
  PIPE_SCHEDULES,
  cutStages,
  estimateMemory,
  estimateStrategy,
  formatBytes,
  gpipeSchedule,
  oneFOneBSchedule,
  renderTimeline,
  simulateSchedule,
  type MemoryEstimate,
  type PipeScheduleName,
} from '@zeroring/train';
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
  model?: PresetName;
  batchSize?: number;
  nproc?: number;
  pp?: number;
  microBatches?: number;
  schedule: PipeScheduleName;
  data?: string;
  vocabSize?: number;
  json?: boolean;
}

interface ModelCount {
  name: string;
  vocabSize: number;
  params: number;
  shardParams: number;
  config: GPTConfig;
  blocks: { name: string; params: { name: string; shape: number[] }[] }[];
}

/**
 * Bytes of activations one window of T tokens leaves on the gradient tape for backward: per token
 * and layer about 18·C floats (LayerNorm inputs, qkv, the attention output, the MLP's 4C-wide
 * hidden layer before and after GELU, residuals), and about 4·V + 3·C for the head. Attention
 * keeps no T×T scores: its WGSL programs recompute them. Fitted to what `zeroring train --backend
 * webgpu` reported in metrics.jsonl (memory.activations) for tiny (1.2 MB a window) and small
 * (43 MB); it predicts 173 MB for gpt2. The CPU backends' attention kernel keeps its
 * probabilities, so wasm keeps more (tiny: 2.1 MB). An estimate: metrics.jsonl has the measure.
 */
export function activationBytesPerWindow(c: GPTConfig): number {
  const { blockSize: t, nLayer: l, nEmbd: e, vocabSize: v } = c;
  return 4 * t * (l * blockFloatsPerToken(c) + 4 * v + 3 * e);
}

/**
 * The share of activationBytesPerWindow that one block keeps: 18·C floats a token for a
 * transformer block, 4·V + 3·C for the head (final LayerNorm, logits, their softmax), none for
 * the embedding (a lookup; its output is the next block's input, counted there). The blocks' shares
 * add up to activationBytesPerWindow.
 */
export function blockActivationBytesPerWindow(c: GPTConfig, block: string): number {
  if (block === 'embed') return 0;
  if (block === 'head') return 4 * c.blockSize * (4 * c.vocabSize + 3 * c.nEmbd);
  return 4 * c.blockSize * blockFloatsPerToken(c);
}

/** Floats per token one transformer block keeps for its backward (see activationBytesPerWindow). */
function blockFloatsPerToken({ nEmbd: e }: GPTConfig): number {
  return 18 * e;
}

interface ActivationEstimate {
  batchSize: number;
  bytesPerWindow: number;
  /** DDP, ZeRO-1 and ZeRO-2: every block's tape, kept from forward to backward. */
  keptBytes: number;
  /** ZeRO-3 (recomputes each block in backward): the block inputs plus one block's tape. */
  recomputedBytes: number;
}

function activationEstimate(c: GPTConfig, batchSize: number): ActivationEstimate {
  const bytesPerWindow = activationBytesPerWindow(c);
  const blockInputs = 4 * c.blockSize * c.nEmbd * (c.nLayer + 2);
  const oneBlock = 4 * c.blockSize * Math.max(blockFloatsPerToken(c), 4 * c.vocabSize + 3 * c.nEmbd);
  return {
    batchSize,
    bytesPerWindow,
    keptBytes: batchSize * bytesPerWindow,
    recomputedBytes: batchSize * (blockInputs + oneBlock),
  };
}

/** Parameter count and rank shard of a GPT preset, from its param specs and the real partition. */
async function countModel(
  preset: PresetName,
  nproc: number,
  data: string | undefined,
  vocab: number | undefined,
): Promise<ModelCount> {
  const gpt = await import('@zeroring/gpt');
  const vocabSize = vocab ?? gpt.CharTokenizer.fromText(gpt.loadCorpus(data)).vocabSize;
  const model = gpt.createGPT(gpt.gptConfig(preset, vocabSize));
  const part = FlatPartition.fromModel(model, nproc);
  return {
    name: preset,
    vocabSize,
    params: part.numel,
    shardParams: part.shardLength,
    config: model.config,
    blocks: model.blocks.map((b) => ({ name: b.name, params: b.params })),
  };
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

function activationLines(a: ActivationEstimate): string[] {
  return [
    `Activations per rank at batch ${a.batchSize} (estimate; metrics.jsonl reports the measured bytes):`,
    `  ${formatBytes(a.bytesPerWindow)} per window; add them to the device column above`,
    `  ddp, zero1, zero2: ${formatBytes(a.keptBytes)} (every block's tape kept for backward)`,
    `  zero3:             ${formatBytes(a.recomputedBytes)} (block inputs and one block's tape, recomputed)`,
    `  a GPU of G bytes holds about B = (G - device column - headroom for buffers) / per-window bytes`,
    '',
  ];
}

interface StageEstimate {
  stage: number;
  blocks: string[];
  params: number;
  /** fp32 params, grads and Adam moments of the stage's blocks (16 bytes a parameter). */
  modelStateBytes: number;
  /** Most micro-batches forwarded and not yet backwarded at once (the schedule's peak). */
  peakLiveMicroBatches: number;
  activationBytesPerWindow: number;
  /** peakLiveMicroBatches x batch size x activationBytesPerWindow. */
  activationBytes: number;
  totalBytes: number;
}

interface PipelineEstimate {
  stages: number;
  microBatches: number;
  schedule: PipeScheduleName;
  /** Windows per micro-batch. */
  batchSize: number;
  /** Idle share of the stages, at equal stage times and backward = 2 x forward. */
  bubble: number;
  timeline: string;
  perStage: StageEstimate[];
}

function pipelineEstimate(model: ModelCount, opts: Options): PipelineEstimate {
  const stages = opts.pp!;
  const micros = opts.microBatches!;
  const batchSize = opts.batchSize ?? 1;
  const schedule = (opts.schedule === 'gpipe' ? gpipeSchedule : oneFOneBSchedule)(stages, micros);
  const t = simulateSchedule(schedule, { fwdTime: 1, bwdTime: 2 });
  const perStage = cutStages(model.blocks, stages).map((cut): StageEstimate => {
    const blocks = model.blocks.slice(cut.first, cut.end).map((b) => b.name);
    const perWindow = blocks.reduce((a, b) => a + blockActivationBytesPerWindow(model.config, b), 0);
    const modelStateBytes = estimateStrategy('ddp', false, { params: cut.params, nproc: 1 }).device.total;
    const activationBytes = t.peakLive[cut.stage]! * batchSize * perWindow;
    return {
      stage: cut.stage,
      blocks,
      params: cut.params,
      modelStateBytes,
      peakLiveMicroBatches: t.peakLive[cut.stage]!,
      activationBytesPerWindow: perWindow,
      activationBytes,
      totalBytes: modelStateBytes + activationBytes,
    };
  });
  return {
    stages,
    microBatches: micros,
    schedule: opts.schedule,
    batchSize,
    bubble: t.bubble,
    timeline: renderTimeline(t),
    perStage,
  };
}

function stageTable(rows: StageEstimate[]): string {
  const head = ['stage', 'blocks', 'params', 'model state', 'live', 'activations', 'device/stage'];
  const span = (b: string[]): string => (b.length === 1 ? b[0]! : `${b[0]}..${b.at(-1)}`);
  const body = rows.map((r) => [
    String(r.stage),
    span(r.blocks),
    human(r.params),
    formatBytes(r.modelStateBytes),
    String(r.peakLiveMicroBatches),
    formatBytes(r.activationBytes),
    formatBytes(r.totalBytes),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]): string =>
    '  ' +
    cells
      .map((c, i) => (i >= 2 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n');
}

function pipelineLines(model: ModelCount, p: PipelineEstimate): string[] {
  return [
    `Pipeline estimate: GPT ${model.name} (vocab ${model.vocabSize}), ${human(model.params)} params, ` +
      `${p.stages} stage(s), ${p.microBatches} micro-batch(es) of ${p.batchSize} window(s), ${p.schedule}`,
    `  stages cut by parameter count (the tied wte is held by the first and the last stage);`,
    `  per stage: fp32 params + grads + Adam (16 bytes/param), and activations of the micro-batches`,
    `  live at the schedule's peak; not included: received/sent buffers, framework overhead`,
    '',
    stageTable(p.perStage),
    '',
    `Timeline (equal stage times, backward = 2 x forward): bubble ${(100 * p.bubble).toFixed(1)}% ` + `= (P-1)/(M+P-1)`,
    p.timeline,
    '',
  ];
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
        '# the batch a GPU holds: model state plus B windows of activations must fit its memory',
        'zeroring estimate-memory --model gpt2 --nproc 1 --batch-size 16',
        '# a pipeline of 4 stages, 8 micro-batches of 2 windows: per-stage memory and the timeline',
        'zeroring estimate-memory --model gpt2 --pp 4 --micro-batches 8 --batch-size 2',
        'zeroring estimate-memory --model small --pp 2 --micro-batches 4 --schedule gpipe',
      ),
    )
    .addOption(
      new Option('--params <P>', 'parameter count, e.g. 1.5M, 10M, 1B').argParser(parseParamCount).conflicts('model'),
    )
    .addOption(new Option('--model <name>', 'count the parameters of a GPT preset').choices(Object.keys(presets)))
    .addOption(
      new Option(
        '--batch-size <B>',
        "with --model: also estimate the activations of B windows per rank (train's B); with --pp, per micro-batch",
      )
        .argParser(parsePositiveInt('--batch-size'))
        .conflicts('params'),
    )
    .option('--nproc <N>', 'number of ranks (with --pp: P, one rank per stage)', parsePositiveInt('--nproc'))
    .addOption(
      new Option('--pp <P>', 'with --model: pipeline stages; per-stage memory and the schedule timeline')
        .argParser(parsePositiveInt('--pp'))
        .conflicts('params'),
    )
    .option('--micro-batches <M>', 'with --pp: micro-batches per step', parsePositiveInt('--micro-batches'))
    .addOption(
      new Option('--schedule <name>', 'with --pp: pipeline schedule')
        .choices(PIPE_SCHEDULES.filter((n) => n !== 'interleaved'))
        .default('1f1b'),
    )
    .option('--data <FILE>', 'with --model: corpus whose characters set the vocabulary (default Moby Dick)')
    .option('--vocab-size <V>', 'with --model: vocabulary size instead of the corpus', parsePositiveInt('--vocab-size'))
    .option('--json', 'print JSON instead of a table')
    .action(async (opts: Options, cmd: Command) => {
      if (opts.params === undefined && opts.model === undefined)
        cmd.error(`error: give --params P or --model ${Object.keys(presets).join('|')}`);
      if (opts.pp !== undefined) {
        if (opts.model === undefined) cmd.error(`error: --pp needs --model ${Object.keys(presets).join('|')}`);
        if (opts.microBatches === undefined) cmd.error('error: --pp needs --micro-batches M');
        if (opts.nproc !== undefined && opts.nproc !== opts.pp)
          cmd.error(
            `error: --nproc ${opts.nproc} with --pp ${opts.pp}, expected --nproc ${opts.pp} ` +
              '(one rank per stage; data parallelism across pipelines is not estimated)',
          );
        const model = await countModel(opts.model!, opts.pp, opts.data, opts.vocabSize);
        const blocks = model.blocks.length;
        if (opts.pp > blocks) cmd.error(`error: --pp ${opts.pp}, expected at most ${blocks} (the model's blocks)`);
        const pipeline = pipelineEstimate(model, opts);
        if (opts.json) {
          const counted = { ...model, blocks: undefined };
          process.stdout.write(JSON.stringify({ params: model.params, model: counted, pipeline }, null, 2) + '\n');
        } else process.stdout.write(pipelineLines(model, pipeline).join('\n'));
        return;
      }
      if (opts.microBatches !== undefined) cmd.error('error: --micro-batches needs --pp P');
      if (opts.nproc === undefined) cmd.error("error: required option '--nproc <N>' not specified");
      const nproc = opts.nproc;
      const model =
        opts.model !== undefined ? await countModel(opts.model, nproc, opts.data, opts.vocabSize) : undefined;
      const params = model?.params ?? opts.params!;
      const shardParams = model?.shardParams ?? Math.ceil(params / nproc);
      const rows = estimateMemory({ params, nproc, shardParams });
      const activations =
        model && opts.batchSize !== undefined ? activationEstimate(model.config, opts.batchSize) : undefined;
      if (opts.json) {
        const counted = model && { ...model, blocks: undefined };
        const out = { params, nproc, shardParams, model: counted, estimates: rows, activations };
        process.stdout.write(JSON.stringify(out, null, 2) + '\n');
        return;
      }
      const what = model
        ? `GPT ${model.name} (vocab ${model.vocabSize}): ${human(params)} params`
        : `${human(params)} params`;
      process.stdout.write(
        [
          `Estimated model-state memory per rank: fp32 params and grads, Adam moments (16 bytes/param unsharded)`,
          `  ${what}, ${nproc} rank(s), ${human(shardParams)} params owned per rank`,
          `  not included: activations, gathered blocks in flight, communication buffers, framework overhead`,
          '',
          table(rows),
          '',
          ...(activations ? activationLines(activations) : []),
        ].join('\n'),
      );
    });
}
