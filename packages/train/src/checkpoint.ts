// Checkpoints: one directory per saved step (each rank's shard, config, tokenizer, trainer state,
// the full model, and a manifest that rank 0 writes last). Each file is written atomically (temp
// name, fsync, rename, fsync the directory), so a crash leaves either a complete checkpoint or one
// recognisably incomplete. A shard describes itself (the parameter ranges it holds, a hash per
// block of its data), so a loader at any world size reads and checks only the ranges it needs
// (checkpoint-source.ts). The format is written down in docs/checkpoint-format.md.
// Details: docs/internals.md#checkpoint
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import type { ShardState } from './strategy.ts';

export class CheckpointError extends Error {
  override name = 'CheckpointError';
}

const MAGIC = 'ZRSHARD1';
export const CHECKPOINT_FORMAT = 'zeroring-checkpoint-2';
/** Still loadable: shards without pieces or block hashes, verified whole. */
const FIRST_FORMAT = 'zeroring-checkpoint-1';
/** Floats per hashed block of a shard's data (64 KiB): what a partial read rounds out to. */
export const BLOCK_FLOATS = 16384;

export interface ManifestEntry {
  bytes: number;
  /** The whole file's sha256 (small files, and every file of the first format). */
  sha256?: string;
  /** A shard's header's sha256; its data is checked block by block against the header's hashes. */
  headerSha256?: string;
}

export interface Manifest {
  format: typeof CHECKPOINT_FORMAT | typeof FIRST_FORMAT;
  step: number;
  worldSize: number;
  files: Record<string, ManifestEntry>;
}

/** A shard file's header: its state's meta, its arrays in order, and a hash per data block. */
export interface ShardHeader {
  meta: Record<string, unknown>;
  arrays: Array<{ name: string; length: number }>;
  blockFloats?: number;
  blockHashes?: string[];
}

/** The hash recorded for one data block (128 bits of its sha256). */
export function blockHash(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex').slice(0, 32);
}

export const shardFile = (rank: number): string => `shard-rank${rank}.bin`;
export const stepDirName = (step: number): string => `step-${String(step).padStart(8, '0')}`;

// ---- shard encoding: magic, u32 header length, JSON header, zero padding to 4, float32 data ----

/** Where a shard's data starts, for a header of `headerBytes`. */
export const dataStartOf = (headerBytes: number): number => Math.ceil((MAGIC.length + 4 + headerBytes) / 4) * 4;

export function encodeShard(state: ShardState): Buffer {
  const arrays: Array<{ name: string; length: number }> = [];
  let floats = 0;
  for (const [name, a] of state.arrays) {
    arrays.push({ name, length: a.length });
    floats += a.length;
  }
  const data = Buffer.alloc(floats * 4);
  let off = 0;
  for (const a of state.arrays.values()) {
    Buffer.from(a.buffer, a.byteOffset, a.byteLength).copy(data, off);
    off += a.byteLength;
  }
  const blockHashes: string[] = [];
  for (let at = 0; at < data.length; at += BLOCK_FLOATS * 4)
    blockHashes.push(blockHash(data.subarray(at, at + BLOCK_FLOATS * 4)));
  const head: ShardHeader = { meta: state.meta, arrays, blockFloats: BLOCK_FLOATS, blockHashes };
  const header = Buffer.from(JSON.stringify(head), 'utf8');
  const buf = Buffer.alloc(dataStartOf(header.length) + data.length);
  buf.write(MAGIC, 0, 'latin1');
  buf.writeUInt32LE(header.length, MAGIC.length);
  header.copy(buf, MAGIC.length + 4);
  data.copy(buf, dataStartOf(header.length));
  return buf;
}

/** The header length a shard's first bytes give, checking the magic. */
export function headerLength(start: Buffer, what: string, fileBytes: number): number {
  if (start.length < MAGIC.length + 4 || start.toString('latin1', 0, MAGIC.length) !== MAGIC) {
    throw new CheckpointError(`${what} does not start with "${MAGIC}", expected a zeroring shard file`);
  }
  const hlen = start.readUInt32LE(MAGIC.length);
  if (MAGIC.length + 4 + hlen > fileBytes)
    throw new CheckpointError(`${what}: header length ${hlen} exceeds file size ${fileBytes}`);
  return hlen;
}

/** Where a shard's header sits in its file. */
export const headerRange = (hlen: number): [number, number] => [MAGIC.length + 4, MAGIC.length + 4 + hlen];

export function decodeShard(buf: Buffer, what = 'shard'): ShardState {
  const hlen = headerLength(buf, what, buf.length);
  const header = JSON.parse(buf.toString('utf8', ...headerRange(hlen))) as ShardHeader;
  const dataStart = dataStartOf(hlen);
  const arrays = new Map<string, Float32Array>();
  let off = dataStart;
  for (const { name, length } of header.arrays) {
    if (off + length * 4 > buf.length)
      throw new CheckpointError(
        `${what}: array "${name}" (${length} floats at byte ` +
          `${off}) runs past the end of the file (${buf.length} bytes)`,
      );
    // Copy out so the arrays are aligned and do not pin the file buffer.
    const a = new Float32Array(length);
    Buffer.from(a.buffer).set(buf.subarray(off, off + length * 4));
    arrays.set(name, a);
    off += length * 4;
  }
  (header.blockHashes ?? []).forEach((want, b) => {
    const at = dataStart + b * (header.blockFloats ?? BLOCK_FLOATS) * 4;
    const got = blockHash(buf.subarray(at, Math.min(off, at + (header.blockFloats ?? BLOCK_FLOATS) * 4)));
    if (got !== want)
      throw new CheckpointError(`${what} is corrupt: data block ${b} has hash ${got}, expected ${want}`);
  });
  return { meta: header.meta, arrays };
}

// ---- crash-safe file writes ----

export function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

async function fsyncDir(dir: string): Promise<void> {
  const h = await fs.open(dir, 'r');
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}

/** Write `data` to `path` atomically: temp file, fsync, rename, fsync the directory. */
export async function writeFileAtomic(path: string, data: Buffer | string): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
  const h = await fs.open(tmp, 'w');
  try {
    await h.writeFile(data);
    await h.sync();
  } finally {
    await h.close();
  }
  await fs.rename(tmp, path);
  await fsyncDir(join(path, '..'));
}

// ---- save ----

export interface SaveCheckpointOptions {
  /** Parent directory of the step-* directories (e.g. OUT/checkpoints). */
  root: string;
  step: number;
  rank: number;
  worldSize: number;
  shard: ShardState;
  /** Files rank 0 writes besides the shards: name -> JSON value, or raw bytes as a Buffer. */
  common: Record<string, unknown>;
  /** Resolves when every rank has written its shard (a process-group barrier; omit for one process). */
  barrier?: () => Promise<void>;
  /** Complete checkpoints to keep (older ones are deleted by rank 0 after the new manifest). Default 2. */
  keep?: number;
}

/** Save this rank's part of a checkpoint; rank 0 also writes common files and the manifest. */
export async function saveCheckpoint(opts: SaveCheckpointOptions): Promise<string> {
  const dir = join(opts.root, stepDirName(opts.step));
  await fs.mkdir(dir, { recursive: true });
  // A manifest left from an earlier save of this step would vouch for files being replaced now.
  if (opts.rank === 0) await fs.rm(join(dir, 'manifest.json'), { force: true });
  await opts.barrier?.();
  await writeFileAtomic(join(dir, shardFile(opts.rank)), encodeShard(opts.shard));
  if (opts.rank === 0) {
    for (const [name, value] of Object.entries(opts.common)) {
      await writeFileAtomic(join(dir, name), Buffer.isBuffer(value) ? value : JSON.stringify(value, null, 2) + '\n');
    }
  }
  await opts.barrier?.();
  if (opts.rank === 0) {
    const files: Record<string, ManifestEntry> = {};
    // Shards vouch for their data block by block; the manifest vouches for their headers.
    for (let r = 0; r < opts.worldSize; r++) files[shardFile(r)] = await shardEntry(join(dir, shardFile(r)));
    for (const name of Object.keys(opts.common)) {
      const data = await fs.readFile(join(dir, name));
      files[name] = { bytes: data.length, sha256: sha256(data) };
    }
    const manifest: Manifest = { format: CHECKPOINT_FORMAT, step: opts.step, worldSize: opts.worldSize, files };
    await writeFileAtomic(join(dir, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
    await pruneCheckpoints(opts.root, opts.keep ?? 2);
  }
  await opts.barrier?.();
  return dir;
}

/** A shard file and its header, read without its data. */
export async function readShardHeader(
  path: string,
): Promise<{ header: ShardHeader; headerBytes: Buffer; dataStart: number; bytes: number }> {
  const h = await fs.open(path, 'r');
  try {
    const bytes = (await h.stat()).size;
    const start = Buffer.alloc(12);
    await h.read(start, 0, 12, 0);
    const hlen = headerLength(start, path, bytes);
    const [from, to] = headerRange(hlen);
    const headerBytes = Buffer.alloc(hlen);
    await h.read(headerBytes, 0, hlen, from);
    let header: ShardHeader;
    try {
      header = JSON.parse(headerBytes.toString('utf8')) as ShardHeader;
    } catch (err) {
      throw new CheckpointError(`${path}: header bytes ${from}..${to} are not JSON (${(err as Error).message})`);
    }
    return { header, headerBytes, dataStart: dataStartOf(hlen), bytes };
  } finally {
    await h.close();
  }
}

async function shardEntry(path: string): Promise<ManifestEntry> {
  const { headerBytes, bytes } = await readShardHeader(path);
  return { bytes, headerSha256: sha256(headerBytes) };
}

export async function listStepDirs(root: string): Promise<Array<{ step: number; dir: string }>> {
  let names: string[];
  try {
    names = await fs.readdir(root);
  } catch {
    return [];
  }
  return names
    .map((n) => /^step-(\d+)$/.exec(n))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ step: Number(m[1]), dir: join(root, m[0]) }))
    .sort((a, b) => b.step - a.step);
}

/** Delete all but the newest `keep` complete checkpoints (incomplete ones older than those too). */
async function pruneCheckpoints(root: string, keep: number): Promise<void> {
  let complete = 0;
  for (const { dir } of await listStepDirs(root)) {
    const hasManifest = await fs.access(join(dir, 'manifest.json')).then(
      () => true,
      () => false,
    );
    if (hasManifest && complete < keep) {
      complete++;
      continue;
    }
    if (complete >= keep) await fs.rm(dir, { recursive: true, force: true });
  }
}

// ---- load ----

/**
 * Checks a checkpoint's files against its manifest; returns the manifest or throws saying what is
 * wrong. `whole` reads every file and checks every hash; otherwise large files are checked by
 * size, and a loader checks what it reads (a shard's header and data blocks) as it reads it.
 */
export async function verifyCheckpoint(dir: string, opts: { whole?: boolean } = {}): Promise<Manifest> {
  let manifest: Manifest;
  try {
    manifest = JSON.parse(await fs.readFile(join(dir, 'manifest.json'), 'utf8')) as Manifest;
  } catch (err) {
    throw new CheckpointError(
      `${dir}: no readable manifest.json (${(err as Error).message.split('\n')[0]}); the save did not complete`,
    );
  }
  if (manifest.format !== CHECKPOINT_FORMAT && manifest.format !== FIRST_FORMAT)
    throw new CheckpointError(
      `${dir}/manifest.json has format ${JSON.stringify(manifest.format)}, ` +
        `expected "${CHECKPOINT_FORMAT}" or "${FIRST_FORMAT}"`,
    );
  const whole = opts.whole === true || manifest.format === FIRST_FORMAT;
  for (const [name, entry] of Object.entries(manifest.files)) {
    const path = join(dir, name);
    const size = await fs.stat(path).then(
      (st) => st.size,
      () => undefined,
    );
    if (size === undefined) throw new CheckpointError(`${path} is missing, expected ${entry.bytes} bytes`);
    if (size !== entry.bytes) throw new CheckpointError(`${path} is corrupt: ${size} bytes, expected ${entry.bytes}`);
    if (!whole && (entry.headerSha256 || name.endsWith('.bin'))) continue;
    const data = await fs.readFile(path);
    if (entry.sha256 && sha256(data) !== entry.sha256) {
      throw new CheckpointError(`${path} is corrupt: sha256 ${sha256(data)}, expected ${entry.sha256}`);
    }
    if (entry.headerSha256) {
      const [from, to] = headerRange(headerLength(data, path, data.length));
      if (sha256(data.subarray(from, to)) !== entry.headerSha256)
        throw new CheckpointError(`${path} is corrupt: its header's sha256 differs from the manifest's`);
      decodeShard(data, path); // checks every data block
    }
  }
  return manifest;
}

/** The full parameters a checkpoint's model.bin holds (name -> values). */
export async function readModelParams(dir: string): Promise<Map<string, Float32Array>> {
  return decodeShard(await fs.readFile(join(dir, 'model.bin')), `${dir}/model.bin`).arrays;
}

/**
 * The newest complete checkpoint directory under root (for `zeroring sample`), or a dir that is
 * itself a checkpoint; checked whole unless `whole` is false (then as verifyCheckpoint says).
 */
export async function resolveCheckpointDir(
  path: string,
  warn: (msg: string) => void = () => {},
  opts: { whole?: boolean } = { whole: true },
): Promise<string> {
  const direct = await fs.access(join(path, 'manifest.json')).then(
    () => true,
    () => false,
  );
  if (direct) {
    await verifyCheckpoint(path, opts);
    return path;
  }
  for (const root of [join(path, 'checkpoints'), path]) {
    const dirs = await listStepDirs(root);
    for (const { dir } of dirs) {
      try {
        await verifyCheckpoint(dir, opts);
        return dir;
      } catch (err) {
        warn(`checkpoint ${dir} unusable, falling back to the previous one: ${(err as Error).message}`);
      }
    }
  }
  throw new CheckpointError(
    `no complete checkpoint at ${path} (looked for manifest.json there, ` +
      `and step-* directories in ${join(path, 'checkpoints')} and ${path})`,
  );
}
