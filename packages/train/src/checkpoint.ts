// Checkpoints: one directory per saved step (each rank's shard, config, tokenizer, trainer state,
// the full model, and a manifest of sizes and sha256 that rank 0 writes last). Each file is
// written atomically (temp name, fsync, rename, fsync the directory), so a crash leaves either a
// complete checkpoint or one recognisably incomplete; loading takes the newest complete one and
// reports why it skipped any newer one.
// Details: docs/internals.md#checkpoint
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import type { ShardState } from './strategy.ts';

export class CheckpointError extends Error {
  override name = 'CheckpointError';
}

const MAGIC = 'ZRSHARD1';

export interface ManifestEntry {
  bytes: number;
  sha256: string;
}

export interface Manifest {
  format: 'zeroring-checkpoint-1';
  step: number;
  worldSize: number;
  files: Record<string, ManifestEntry>;
}

export const shardFile = (rank: number): string => `shard-rank${rank}.bin`;
export const stepDirName = (step: number): string => `step-${String(step).padStart(8, '0')}`;

// ---- shard encoding: magic, u32 header length, JSON header, zero padding to 4, float32 data ----

export function encodeShard(state: ShardState): Buffer {
  const arrays: Array<{ name: string; length: number }> = [];
  let floats = 0;
  for (const [name, a] of state.arrays) {
    arrays.push({ name, length: a.length });
    floats += a.length;
  }
  const header = Buffer.from(JSON.stringify({ meta: state.meta, arrays }), 'utf8');
  const headerEnd = MAGIC.length + 4 + header.length;
  const dataStart = Math.ceil(headerEnd / 4) * 4;
  const buf = Buffer.alloc(dataStart + floats * 4);
  buf.write(MAGIC, 0, 'latin1');
  buf.writeUInt32LE(header.length, MAGIC.length);
  header.copy(buf, MAGIC.length + 4);
  let off = dataStart;
  for (const a of state.arrays.values()) {
    Buffer.from(a.buffer, a.byteOffset, a.byteLength).copy(buf, off);
    off += a.byteLength;
  }
  return buf;
}

export function decodeShard(buf: Buffer, what = 'shard'): ShardState {
  if (buf.length < MAGIC.length + 4 || buf.toString('latin1', 0, MAGIC.length) !== MAGIC) {
    throw new CheckpointError(`${what} does not start with "${MAGIC}", expected a zeroring shard file`);
  }
  const hlen = buf.readUInt32LE(MAGIC.length);
  const headerEnd = MAGIC.length + 4 + hlen;
  if (headerEnd > buf.length)
    throw new CheckpointError(`${what}: header length ${hlen} exceeds file size ${buf.length}`);
  const header = JSON.parse(buf.toString('utf8', MAGIC.length + 4, headerEnd)) as {
    meta: Record<string, unknown>;
    arrays: Array<{ name: string; length: number }>;
  };
  let off = Math.ceil(headerEnd / 4) * 4;
  const arrays = new Map<string, Float32Array>();
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
    const names = [...Array.from({ length: opts.worldSize }, (_, r) => shardFile(r)), ...Object.keys(opts.common)];
    for (const name of names) {
      const data = await fs.readFile(join(dir, name));
      files[name] = { bytes: data.length, sha256: sha256(data) };
    }
    const manifest: Manifest = { format: 'zeroring-checkpoint-1', step: opts.step, worldSize: opts.worldSize, files };
    await writeFileAtomic(join(dir, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
    await pruneCheckpoints(opts.root, opts.keep ?? 2);
  }
  await opts.barrier?.();
  return dir;
}

async function listStepDirs(root: string): Promise<Array<{ step: number; dir: string }>> {
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

/** Check every file listed in the manifest; returns the manifest or throws saying what is wrong. */
export async function verifyCheckpoint(dir: string): Promise<Manifest> {
  let manifest: Manifest;
  try {
    manifest = JSON.parse(await fs.readFile(join(dir, 'manifest.json'), 'utf8')) as Manifest;
  } catch (err) {
    throw new CheckpointError(
      `${dir}: no readable manifest.json (${(err as Error).message.split('\n')[0]}); the save did not complete`,
    );
  }
  if (manifest.format !== 'zeroring-checkpoint-1')
    throw new CheckpointError(
      `${dir}/manifest.json has format ${JSON.stringify(manifest.format)}, expected "zeroring-checkpoint-1"`,
    );
  for (const [name, entry] of Object.entries(manifest.files)) {
    let data: Buffer;
    try {
      data = await fs.readFile(join(dir, name));
    } catch {
      throw new CheckpointError(`${dir}/${name} is missing, expected ${entry.bytes} bytes with sha256 ${entry.sha256}`);
    }
    const got = sha256(data);
    if (data.length !== entry.bytes || got !== entry.sha256) {
      throw new CheckpointError(
        `${dir}/${name} is corrupt: ${data.length} bytes with sha256 ` +
          `${got}, expected ${entry.bytes} bytes with sha256 ${entry.sha256}`,
      );
    }
  }
  return manifest;
}

export interface LoadedCheckpoint {
  dir: string;
  step: number;
  manifest: Manifest;
  shard: ShardState;
  /** The common JSON files by name (config.json, tokenizer.json, trainer.json, ...). */
  common: Record<string, unknown>;
  /** Newer checkpoints that were skipped, with the reason. */
  skipped: Array<{ dir: string; reason: string }>;
}

/**
 * The newest complete checkpoint under `root` for `rank` of `worldSize`. Newer corrupt or
 * incomplete ones are skipped (reported in `skipped` and to `warn`). Throws CheckpointError when
 * none is usable, listing why each was rejected.
 */
export async function loadLatestCheckpoint(
  root: string,
  rank: number,
  worldSize: number,
  warn: (msg: string) => void = () => {},
): Promise<LoadedCheckpoint> {
  const skipped: Array<{ dir: string; reason: string }> = [];
  for (const { step, dir } of await listStepDirs(root)) {
    try {
      const manifest = await verifyCheckpoint(dir);
      if (manifest.worldSize !== worldSize) {
        throw new CheckpointError(
          `${dir} was saved by ${manifest.worldSize} ranks, expected ${worldSize} (resume with the same --nproc)`,
        );
      }
      const shard = decodeShard(await fs.readFile(join(dir, shardFile(rank))), `${dir}/${shardFile(rank)}`);
      const common: Record<string, unknown> = {};
      for (const name of Object.keys(manifest.files)) {
        if (name.endsWith('.json')) common[name] = JSON.parse(await fs.readFile(join(dir, name), 'utf8'));
      }
      return { dir, step, manifest, shard, common, skipped };
    } catch (err) {
      const reason = (err as Error).message;
      skipped.push({ dir, reason });
      warn(`checkpoint ${dir} unusable, falling back to the previous one: ${reason}`);
    }
  }
  const why = skipped.length ? `: ${skipped.map((s) => s.reason).join('; ')}` : ' (none found)';
  throw new CheckpointError(`no complete checkpoint under ${root}${why}`);
}

/** The full parameters a checkpoint's model.bin holds (name -> values). */
export async function readModelParams(dir: string): Promise<Map<string, Float32Array>> {
  return decodeShard(await fs.readFile(join(dir, 'model.bin')), `${dir}/model.bin`).arrays;
}

/**
 * The newest complete checkpoint directory under root (for `zeroring sample`), or a dir that is
 * itself a checkpoint.
 */
export async function resolveCheckpointDir(path: string, warn: (msg: string) => void = () => {}): Promise<string> {
  const direct = await fs.access(join(path, 'manifest.json')).then(
    () => true,
    () => false,
  );
  if (direct) {
    await verifyCheckpoint(path);
    return path;
  }
  for (const root of [join(path, 'checkpoints'), path]) {
    const dirs = await listStepDirs(root);
    for (const { dir } of dirs) {
      try {
        await verifyCheckpoint(dir);
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
