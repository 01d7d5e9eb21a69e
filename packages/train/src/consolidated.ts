// One file holding a whole checkpoint (DeepSpeed's universal checkpoint, zero_to_fp32 with the
// optimizer kept): every parameter whole with both AdamW moments, the step count, and the run's
// config, tokenizer and trainer state. It is a shard in the checkpoint encoding that holds every
// piece, so it is read through the same range reader (checkpoint-source.ts) and resumes at any
// world size with any strategy; with paramsOnly it holds what sampling needs, and nothing to
// resume from. Files of the first consolidated format (parameters only) still read.
// Details: docs/checkpoint-format.md#consolidated-file
import { stat, readFile } from 'node:fs/promises';
import { CheckpointError, decodeShard, encodeShard, readShardHeader, resolveCheckpointDir } from './checkpoint.ts';
import { fileStateSource, openCheckpoint } from './checkpoint-source.ts';
import { paramCount, type ParamSpec } from './model.ts';
import { concatArrays, STATE_KINDS, wholeParamRequests, type StateSource } from './state-source.ts';

export const CONSOLIDATED_FORMAT = 'zeroring-consolidated-2';
const FIRST_CONSOLIDATED_FORMAT = 'zeroring-consolidated-1';

export interface ConsolidatedModel {
  /** The run's config.json (modelConfig, strategy, ...), when the checkpoint had one. */
  config?: Record<string, unknown>;
  /** The run's tokenizer.json, when the checkpoint had one. */
  tokenizer?: unknown;
  /** The run's trainer.json (next step, global batch, ...). */
  trainer?: Record<string, unknown>;
  params: Map<string, Float32Array>;
  step: number;
  strategy: string;
  worldSize: number;
}

/** A checkpoint (a run's --out directory or one step directory) merged into one file's bytes. */
export async function consolidateCheckpoint(
  path: string,
  opts: { paramsOnly?: boolean; warn?: (msg: string) => void } = {},
): Promise<{ dir: string; bytes: Buffer; model: ConsolidatedModel }> {
  const dir = await resolveCheckpointDir(path, opts.warn);
  const ck = await openCheckpoint(dir);
  const specs = ck.source.params;
  const kinds = opts.paramsOnly ? (['param'] as const) : STATE_KINDS;
  const requests = wholeParamRequests(specs).filter((r) => kinds.includes(r.kind));
  const got = await ck.source.read(requests);
  const arrays = new Map(kinds.map((kind, k) => [kind, concatArrays(got.filter((_, i) => i % kinds.length === k))]));
  const model: ConsolidatedModel = {
    params: new Map(specs.map((s, i) => [s.name, got[i * kinds.length]])),
    step: ck.step,
    strategy: ck.source.savedBy.strategy,
    worldSize: ck.source.savedBy.worldSize,
    config: ck.common['config.json'] as Record<string, unknown> | undefined,
    tokenizer: ck.common['tokenizer.json'],
    trainer: ck.common['trainer.json'] as Record<string, unknown> | undefined,
  };
  const meta = {
    format: CONSOLIDATED_FORMAT,
    kind: opts.paramsOnly ? 'params' : 'state',
    step: model.step,
    strategy: model.strategy,
    worldSize: model.worldSize,
    t: ck.source.t,
    params: specs,
    pieces: specs.map((s) => ({ name: s.name, offset: 0, length: paramCount(s) })),
    config: model.config,
    tokenizer: model.tokenizer,
    trainer: model.trainer,
  };
  return { dir, bytes: encodeShard({ meta, arrays }), model };
}

/** A file written by `zeroring consolidate`, or undefined when `path` is not a file (e.g. a directory). */
export async function readConsolidated(path: string): Promise<ConsolidatedModel | undefined> {
  const st = await stat(path).catch(() => undefined);
  if (!st?.isFile()) return undefined;
  const { meta, arrays } = decodeShard(await readFile(path), path);
  checkFormat(path, meta.format);
  let params: Map<string, Float32Array>;
  if (meta.format === FIRST_CONSOLIDATED_FORMAT) {
    params = arrays;
  } else {
    const all = arrays.get('param')!;
    let at = 0;
    params = new Map(
      (meta.params as ParamSpec[]).map((s) => {
        const a = all.subarray(at, at + paramCount(s));
        at += paramCount(s);
        return [s.name, a];
      }),
    );
  }
  return {
    params,
    step: Number(meta.step),
    strategy: String(meta.strategy),
    worldSize: Number(meta.worldSize),
    config: meta.config as Record<string, unknown> | undefined,
    tokenizer: meta.tokenizer,
    trainer: meta.trainer as Record<string, unknown> | undefined,
  };
}

/** A consolidated file opened to resume from: its state, read range by range, and its JSON parts. */
export async function openConsolidated(
  path: string,
): Promise<{ step: number; source: StateSource; common: Record<string, unknown> }> {
  const { header, dataStart } = await readShardHeader(path);
  const { meta } = header;
  checkFormat(path, meta.format);
  if (meta.kind !== 'state') {
    throw new CheckpointError(
      `${path} holds parameters only (consolidated with --params-only), expected one with the optimizer state`,
    );
  }
  return {
    step: Number(meta.step),
    source: fileStateSource(path, header, dataStart),
    common: { 'config.json': meta.config, 'tokenizer.json': meta.tokenizer, 'trainer.json': meta.trainer },
  };
}

function checkFormat(path: string, format: unknown): void {
  if (format !== CONSOLIDATED_FORMAT && format !== FIRST_CONSOLIDATED_FORMAT)
    throw new CheckpointError(
      `${path} has format ${JSON.stringify(format)}, expected ` +
        `"${CONSOLIDATED_FORMAT}" (a file from zeroring consolidate)`,
    );
}
