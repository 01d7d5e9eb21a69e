// `zeroring consolidate CHECKPOINT_DIR --out FILE`: merge the per-rank shards of a checkpoint into
// one file of full parameters (DeepSpeed's zero_to_fp32.py). CHECKPOINT_DIR is a run's --out
// directory (its newest complete checkpoint is used) or one checkpoint directory; its manifest
// is verified first. ZeRO shards record the partition layout, which puts them back together
// without the model; DDP/local shards each hold every parameter, so rank 0's are taken.
//
// FILE uses the shard encoding (checkpoint.ts) with one array per parameter name, and its
// header carries the model configuration and tokenizer, so `zeroring sample --checkpoint FILE`
// needs nothing else.
import { stat, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { type Command } from 'commander';
import { getLogger } from '@zeroring/core';
import {
  consolidateShards,
  decodeShard,
  encodeShard,
  resolveCheckpointDir,
  shardFile,
  verifyCheckpoint,
  writeFileAtomic,
  CheckpointError,
  type ShardState,
} from '@zeroring/train';
import { examples } from '../help.ts';

export const CONSOLIDATED_FORMAT = 'zeroring-consolidated-1';

export interface ConsolidatedModel {
  /** The run's config.json (modelConfig, strategy, ...), when the checkpoint had one. */
  config?: Record<string, unknown>;
  /** The run's tokenizer.json, when the checkpoint had one. */
  tokenizer?: unknown;
  params: Map<string, Float32Array>;
  step: number;
  strategy: string;
  worldSize: number;
}

/** Full parameters from a checkpoint directory's shards. */
export async function consolidateCheckpoint(
  path: string,
  warn: (msg: string) => void = () => {},
): Promise<ConsolidatedModel & { dir: string }> {
  const dir = await resolveCheckpointDir(path, warn);
  const manifest = await verifyCheckpoint(dir);
  const states: ShardState[] = [];
  for (let r = 0; r < manifest.worldSize; r++)
    states.push(decodeShard(await readFile(join(dir, shardFile(r))), `${dir}/${shardFile(r)}`));
  const strategy = String(states[0].meta.strategy ?? 'unknown');
  let params: Map<string, Float32Array>;
  if (states[0].meta.layout !== undefined) {
    params = consolidateShards(states);
  } else {
    params = new Map();
    for (const [k, a] of states[0].arrays) if (k.startsWith('param/')) params.set(k.slice('param/'.length), a);
    if (params.size === 0)
      throw new CheckpointError(
        `${dir}/${shardFile(0)} holds neither a ZeRO shard layout ` +
          'nor param/* arrays, expected a zeroring train checkpoint',
      );
  }
  const json = async (name: string): Promise<unknown> =>
    manifest.files[name] ? JSON.parse(await readFile(join(dir, name), 'utf8')) : undefined;
  return {
    dir,
    params,
    step: manifest.step,
    strategy,
    worldSize: manifest.worldSize,
    config: (await json('config.json')) as Record<string, unknown> | undefined,
    tokenizer: await json('tokenizer.json'),
  };
}

export function encodeConsolidated(m: ConsolidatedModel): Buffer {
  return encodeShard({
    meta: {
      kind: 'full-params',
      format: CONSOLIDATED_FORMAT,
      step: m.step,
      strategy: m.strategy,
      worldSize: m.worldSize,
      config: m.config,
      tokenizer: m.tokenizer,
    },
    arrays: m.params,
  });
}

/** A file written by `zeroring consolidate`, or undefined when `path` is not a file (e.g. a directory). */
export async function readConsolidated(path: string): Promise<ConsolidatedModel | undefined> {
  const st = await stat(path).catch(() => undefined);
  if (!st?.isFile()) return undefined;
  const state = decodeShard(await readFile(path), path);
  if (state.meta.format !== CONSOLIDATED_FORMAT)
    throw new CheckpointError(
      `${path} has format ${JSON.stringify(state.meta.format)}, expected ` +
        `"${CONSOLIDATED_FORMAT}" (a file from zeroring consolidate)`,
    );
  const meta = state.meta;
  return {
    params: state.arrays,
    step: Number(meta.step),
    strategy: String(meta.strategy),
    worldSize: Number(meta.worldSize),
    config: meta.config as Record<string, unknown> | undefined,
    tokenizer: meta.tokenizer,
  };
}

export function registerConsolidate(program: Command): void {
  program
    .command('consolidate')
    .description("merge a checkpoint's per-rank shards into one file of full parameters (for zeroring sample)")
    .addHelpText(
      'after',
      examples(
        'zeroring train --nproc 2 --strategy zero3 --out runs/z3',
        'zeroring consolidate runs/z3 --out runs/z3/model.zrc',
        'zeroring sample --checkpoint runs/z3/model.zrc',
      ),
    )
    .argument('<checkpoint-dir>', "a run's --out directory or one checkpoint directory")
    .requiredOption('--out <file>', 'the consolidated file to write')
    .action(async (path: string, flags: { out: string }) => {
      const log = getLogger({ cmd: 'consolidate' });
      const m = await consolidateCheckpoint(path, (msg) => log.warn(msg));
      const buf = encodeConsolidated(m);
      await writeFileAtomic(resolve(flags.out), buf);
      const count = [...m.params.values()].reduce((a, p) => a + p.length, 0);
      log.info(
        { checkpoint: m.dir, out: flags.out, params: count, bytes: buf.length },
        `consolidated ${m.worldSize} ${m.strategy} shard(s) of step ${m.step} from ` +
          `${m.dir}: ${m.params.size} tensors, ${count} parameters -> ${flags.out}`,
      );
    });
}
