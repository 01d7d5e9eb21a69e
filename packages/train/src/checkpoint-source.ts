// A checkpoint's model state as a StateSource, read range by range. Each shard's header (checked
// against the manifest) lists the parameter ranges it holds and a hash per 64 KiB block of its
// data; a request reads only the blocks that hold its ranges, each once, and checks each block's
// hash as it arrives. So a rank loading a ZeRO shard at M ranks reads about 1/M of the state, not
// the whole model. Checkpoints of the first format are read whole, as they were written.
// Details: docs/checkpoint-format.md
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import {
  blockHash,
  CheckpointError,
  decodeShard,
  listStepDirs,
  readShardHeader,
  sha256,
  shardFile,
  verifyCheckpoint,
  type Manifest,
  type ShardHeader,
} from './checkpoint.ts';
import type { ParamSpec } from './model.ts';
import {
  heldPieces,
  memoryStateSource,
  PieceIndex,
  type StatePiece,
  type StateRequest,
  type StateSource,
} from './state-source.ts';
import { StrategyError } from './strategy.ts';

/** One shard file: where each kind's values start, and its block hashes. */
interface ShardFile {
  path: string;
  dataStart: number;
  /** Float offset of each kind's array within the data. */
  kindAt: Map<string, number>;
  blockFloats: number;
  blockHashes: string[];
  dataFloats: number;
}

export async function openCheckpointState(dir: string, manifest: Manifest): Promise<StateSource> {
  if (manifest.format === 'zeroring-checkpoint-1') return firstFormatSource(dir, manifest);
  const files: Array<{ file: ShardFile; header: ShardHeader }> = [];
  for (let r = 0; r < manifest.worldSize; r++) {
    const path = join(dir, shardFile(r));
    const { header, headerBytes, dataStart } = await readShardHeader(path);
    if (sha256(headerBytes) !== manifest.files[shardFile(r)]?.headerSha256) {
      throw new CheckpointError(`${path} is corrupt: its header's sha256 differs from the manifest's`);
    }
    files.push({ file: shardFileOf(path, header, dataStart), header });
  }
  return sourceOver(files, manifest.worldSize);
}

/** One file of pieces (a consolidated file) as a source; its header is read already. */
export function fileStateSource(path: string, header: ShardHeader, dataStart: number): StateSource {
  return sourceOver([{ file: shardFileOf(path, header, dataStart), header }], Number(header.meta.worldSize));
}

function sourceOver(files: ReadonlyArray<{ file: ShardFile; header: ShardHeader }>, worldSize: number): StateSource {
  const index = new PieceIndex<ShardFile>();
  for (const { file, header } of files) index.add(file, heldPieces((header.meta.pieces ?? []) as StatePiece[]));
  const meta = files[0].header.meta;
  const t = meta.t;
  if (typeof t !== 'number' || !Number.isInteger(t) || t < 0) {
    throw new CheckpointError(
      `${files[0].file.path}: optimizer step ${String(t)} is invalid, expected an integer >= 0`,
    );
  }
  return new FileStateSource(index, {
    t,
    params: everyParam(files.map((f) => f.header.meta.params as ParamSpec[])),
    savedBy: { strategy: String(meta.strategy), worldSize },
  });
}

/** The parameters named by any shard, in order of first appearance (pipeline stages hold different ones). */
function everyParam(lists: ReadonlyArray<readonly ParamSpec[] | undefined>): ParamSpec[] {
  const seen = new Map<string, ParamSpec>();
  for (const list of lists) for (const spec of list ?? []) if (!seen.has(spec.name)) seen.set(spec.name, spec);
  return [...seen.values()];
}

function shardFileOf(path: string, header: ShardHeader, dataStart: number): ShardFile {
  const kindAt = new Map<string, number>();
  let at = 0;
  for (const a of header.arrays) {
    kindAt.set(a.name, at);
    at += a.length;
  }
  if (!header.blockFloats || !header.blockHashes) {
    throw new CheckpointError(`${path}: header lacks block hashes, expected a shard of the current format`);
  }
  return { path, dataStart, kindAt, blockFloats: header.blockFloats, blockHashes: header.blockHashes, dataFloats: at };
}

/** The first format: every shard read and checked whole, then served from memory. */
async function firstFormatSource(dir: string, manifest: Manifest): Promise<StateSource> {
  const states = [];
  let bytes = 0;
  for (let r = 0; r < manifest.worldSize; r++) {
    const data = await fs.readFile(join(dir, shardFile(r)));
    bytes += data.length;
    states.push(decodeShard(data, `${dir}/${shardFile(r)}`));
    // Replicated shards of this format each hold everything: one is enough.
    if (states[0].meta.layout === undefined) break;
  }
  return { ...memoryStateSource(states), bytesRead: bytes };
}

class FileStateSource implements StateSource {
  bytesRead = 0;
  readonly t: number;
  readonly params: readonly ParamSpec[];
  readonly savedBy: StateSource['savedBy'];

  constructor(
    private readonly index: PieceIndex<ShardFile>,
    about: Pick<StateSource, 't' | 'params' | 'savedBy'>,
  ) {
    ({ t: this.t, params: this.params, savedBy: this.savedBy } = about);
  }

  async read(requests: readonly StateRequest[]): Promise<Float32Array[]> {
    // Which float ranges of which file each request needs, then every needed block once per file.
    const parts = requests.map((req) =>
      this.index.cover(req).map((c) => {
        const kindAt = c.holder.kindAt.get(req.kind);
        if (kindAt === undefined) throw new StrategyError(`${c.holder.path} holds no ${req.kind} values`);
        return { file: c.holder, start: kindAt + c.piece.at + c.from, into: c.into, length: c.length };
      }),
    );
    const blocks = new Map<ShardFile, Map<number, Float32Array>>();
    for (const p of parts.flat()) {
      const set = blocks.get(p.file) ?? new Map<number, Float32Array>();
      const last = Math.floor((p.start + p.length - 1) / p.file.blockFloats);
      for (let b = Math.floor(p.start / p.file.blockFloats); b <= last; b++) set.set(b, EMPTY);
      blocks.set(p.file, set);
    }
    for (const [file, set] of blocks) await this.readBlocks(file, set);
    return requests.map((req, i) => {
      const out = new Float32Array(req.length);
      for (const p of parts[i]) {
        const bf = p.file.blockFloats;
        for (let at = p.start; at < p.start + p.length;) {
          const b = Math.floor(at / bf);
          const block = blocks.get(p.file)!.get(b)!;
          const n = Math.min(p.start + p.length, (b + 1) * bf) - at;
          out.set(block.subarray(at - b * bf, at - b * bf + n), p.into + (at - p.start));
          at += n;
        }
      }
      return out;
    });
  }

  /** Reads the wanted blocks of a file, runs of adjacent blocks in one read each, and checks them. */
  private async readBlocks(file: ShardFile, want: Map<number, Float32Array>): Promise<void> {
    const ids = [...want.keys()].sort((a, b) => a - b);
    const h = await fs.open(file.path, 'r');
    try {
      for (let i = 0; i < ids.length;) {
        let j = i;
        while (j + 1 < ids.length && ids[j + 1] === ids[j] + 1) j++;
        const fromFloat = ids[i] * file.blockFloats;
        const toFloat = Math.min(file.dataFloats, (ids[j] + 1) * file.blockFloats);
        const buf = Buffer.alloc((toFloat - fromFloat) * 4);
        const { bytesRead } = await h.read(buf, 0, buf.length, file.dataStart + fromFloat * 4);
        if (bytesRead !== buf.length) throw new CheckpointError(`${file.path} ends before its data block ${ids[j]}`);
        this.bytesRead += bytesRead;
        for (let b = ids[i]; b <= ids[j]; b++) {
          const at = (b - ids[i]) * file.blockFloats * 4;
          const bytes = buf.subarray(at, Math.min(buf.length, at + file.blockFloats * 4));
          const got = blockHash(bytes);
          if (got !== file.blockHashes[b]) {
            throw new CheckpointError(
              `${file.path} is corrupt: data block ${b} has hash ${got}, expected ${file.blockHashes[b]}`,
            );
          }
          want.set(b, new Float32Array(buf.buffer, buf.byteOffset + at, bytes.length / 4));
        }
        i = j + 1;
      }
    } finally {
      await h.close();
    }
  }
}

const EMPTY = new Float32Array(0);

export interface LoadedCheckpoint {
  dir: string;
  step: number;
  manifest: Manifest;
  /** The model state, read range by range as a strategy asks for it. */
  source: StateSource;
  /** The common JSON files by name (config.json, tokenizer.json, trainer.json, ...). */
  common: Record<string, unknown>;
  /** Newer checkpoints that were skipped, with the reason. */
  skipped: Array<{ dir: string; reason: string }>;
}

/** A checkpoint directory opened for loading: manifest checked, JSON files read, state not yet read. */
export async function openCheckpoint(dir: string): Promise<Omit<LoadedCheckpoint, 'skipped'>> {
  const manifest = await verifyCheckpoint(dir);
  const common: Record<string, unknown> = {};
  for (const name of Object.keys(manifest.files)) {
    if (name.endsWith('.json')) common[name] = JSON.parse(await fs.readFile(join(dir, name), 'utf8'));
  }
  return { dir, step: manifest.step, manifest, common, source: await openCheckpointState(dir, manifest) };
}

export interface LoadLatestOptions {
  warn?: (msg: string) => void;
  /**
   * Whether every rank could load the candidate (an all-reduce of the flags): ranks read different
   * ranges, so one may find a corrupt block the others never see, and all must fall back together.
   */
  agree?: (ok: boolean) => Promise<boolean>;
}

/**
 * Loads the newest complete checkpoint under `root` with `load` (a strategy's loadState and what
 * else the caller restores). Newer corrupt or incomplete ones are skipped (reported in `skipped`
 * and to `warn`). Throws CheckpointError when none is usable, listing why each was rejected.
 */
export async function loadLatestCheckpoint(
  root: string,
  load: (ck: Omit<LoadedCheckpoint, 'skipped'>) => Promise<void>,
  opts: LoadLatestOptions = {},
): Promise<LoadedCheckpoint> {
  const skipped: Array<{ dir: string; reason: string }> = [];
  for (const { dir } of await listStepDirs(root)) {
    let reason = '';
    let ck: Omit<LoadedCheckpoint, 'skipped'> | undefined;
    try {
      ck = await openCheckpoint(dir);
      await load(ck);
    } catch (err) {
      reason = (err as Error).message;
    }
    const ok = opts.agree ? await opts.agree(reason === '') : reason === '';
    if (ok && ck) return { ...ck, skipped };
    reason ||= 'another rank could not load it';
    skipped.push({ dir, reason });
    opts.warn?.(`checkpoint ${dir} unusable, falling back to the previous one: ${reason}`);
  }
  const why = skipped.length ? `: ${skipped.map((s) => s.reason).join('; ')}` : ' (none found)';
  throw new CheckpointError(`no complete checkpoint under ${root}${why}`);
}
