import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CheckpointError,
  decodeShard,
  encodeShard,
  saveCheckpoint,
  sha256,
  stepDirName,
  shardFile,
  resolveCheckpointDir,
} from '../src/checkpoint.ts';
import { loadLatestCheckpoint, openCheckpoint, type LoadedCheckpoint } from '../src/checkpoint-source.ts';
import { FlatPartition } from '../src/partition.ts';
import { evenPieces, type StateRequest } from '../src/state-source.ts';
import type { ShardState } from '../src/strategy.ts';

const dirs: string[] = [];
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'zr-ckpt-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const PARAMS = [
  { name: 'a', shape: [4] },
  { name: 'b', shape: [3, 5] },
];
/** The full value of a parameter's state of `kind` at `step`: distinct in every element. */
function full(kind: string, name: string, step: number): Float32Array {
  const n = name === 'a' ? 4 : 15;
  const k = ['param', 'm', 'v'].indexOf(kind);
  return Float32Array.from({ length: n }, (_, i) => step + k * 0.25 + i / 64 + (name === 'b' ? 0.5 : 0));
}

/** Rank's even share of the state at `step`, as a strategy's saveState would give it. */
function shard(step: number, rank = 0, worldSize = 1): ShardState {
  const pieces = evenPieces(PARAMS, rank, worldSize);
  const cut = (kind: string) =>
    Float32Array.from(pieces.flatMap((p) => [...full(kind, p.name, step).subarray(p.offset, p.offset + p.length)]));
  return {
    meta: { strategy: 'test', t: step, worldSize, rank, params: PARAMS, pieces },
    arrays: new Map(['param', 'm', 'v'].map((k) => [k, cut(k)])),
  };
}

async function save(root: string, step: number, keep = 5, worldSize = 1) {
  // Higher ranks first: rank 0 writes the manifest over every shard, as after the barrier.
  for (let rank = worldSize - 1; rank >= 0; rank--) {
    await saveCheckpoint({
      root,
      step,
      rank,
      worldSize,
      shard: shard(step, rank, worldSize),
      common: { 'trainer.json': { nextStep: step }, 'extra.bin': Buffer.from([1, 2, 3]) },
      keep,
    });
  }
}

const whole = (name: string, kind: 'param' | 'm' | 'v' = 'param'): StateRequest => ({
  kind,
  name,
  offset: 0,
  length: name === 'a' ? 4 : 15,
});
const readAll = async (ck: Pick<LoadedCheckpoint, 'source'>) =>
  ck.source.read(['param', 'm', 'v'].flatMap((k) => [whole('a', k as 'm'), whole('b', k as 'm')]));
const load = (root: string, warn?: (m: string) => void) =>
  loadLatestCheckpoint(root, async (ck) => void (await readAll(ck)), { warn });

describe('checkpoints', () => {
  it('round-trips a shard bit for bit', () => {
    const s = shard(3);
    const back = decodeShard(encodeShard(s));
    expect(back.meta).toEqual(s.meta);
    expect([...back.arrays.keys()]).toEqual([...s.arrays.keys()]);
    for (const [k, a] of s.arrays)
      expect(Buffer.from(back.arrays.get(k)!.buffer).equals(Buffer.from(a.buffer))).toBe(true);
  });

  it('loads the newest complete checkpoint with its common files', async () => {
    const root = tmp();
    await save(root, 10);
    await save(root, 20);
    const ck = await load(root);
    expect(ck.step).toBe(20);
    expect(ck.common['trainer.json']).toEqual({ nextStep: 20 });
    expect(ck.source.t).toBe(20);
    expect(await readAll(ck)).toEqual(['param', 'm', 'v'].flatMap((k) => [full(k, 'a', 20), full(k, 'b', 20)]));
    expect(ck.skipped).toEqual([]);
    expect(readdirSync(join(root, stepDirName(20))).some((n) => n.includes('.tmp-'))).toBe(false);
  });

  it('falls back to the previous checkpoint when the newest is corrupt, saying which file', async () => {
    const root = tmp();
    await save(root, 10);
    await save(root, 20);
    const bad = join(root, stepDirName(20), shardFile(0));
    const bytes = readFileSync(bad);
    bytes[bytes.length - 1] ^= 0xff;
    writeFileSync(bad, bytes);
    const warnings: string[] = [];
    const ck = await load(root, (m) => warnings.push(m));
    expect(ck.step).toBe(10);
    expect(warnings.join('\n')).toMatch(/shard-rank0\.bin is corrupt: data block 0 has hash [0-9a-f]+, expected/);
    expect(ck.skipped).toHaveLength(1);
  });

  it('skips a checkpoint whose manifest was never written (crash mid-save)', async () => {
    const root = tmp();
    await save(root, 10);
    await save(root, 20);
    rmSync(join(root, stepDirName(20), 'manifest.json'));
    const warnings: string[] = [];
    expect((await load(root, (m) => warnings.push(m))).step).toBe(10);
    expect(warnings[0]).toMatch(/no readable manifest\.json/);
    expect(await resolveCheckpointDir(root)).toBe(join(root, stepDirName(10)));
  });

  it('throws a CheckpointError listing every reason when nothing is usable', async () => {
    const root = tmp();
    await save(root, 10);
    writeFileSync(join(root, stepDirName(10), 'trainer.json'), '{"nextStep": 11}');
    await expect(load(root)).rejects.toThrow(CheckpointError);
    await expect(load(root)).rejects.toThrow(/trainer\.json is corrupt/);
    await expect(load(join(root, 'nope'))).rejects.toThrow(/none found/);
  });

  it('reads state saved by 3 ranks in any ranges, across shard boundaries', async () => {
    const root = tmp();
    await save(root, 7, 5, 3);
    const ck = await load(root);
    expect(await readAll(ck)).toEqual(['param', 'm', 'v'].flatMap((k) => [full(k, 'a', 7), full(k, 'b', 7)]));
    const [mid] = await ck.source.read([{ kind: 'v', name: 'b', offset: 2, length: 11 }]);
    expect(mid).toEqual(full('v', 'b', 7).subarray(2, 13));
    await expect(ck.source.read([{ kind: 'm', name: 'b', offset: 10, length: 6 }])).rejects.toThrow(
      /holds no m\/b\[15\]/,
    );
  });

  it('reads only the blocks a range needs, checking each', async () => {
    const root = tmp();
    const n = 200_000;
    const big = [{ name: 'w', shape: [n] }];
    const values = Float32Array.from({ length: n }, (_, i) => i);
    const pieces = [{ name: 'w', offset: 0, length: n }];
    const arrays = new Map(['param', 'm', 'v'].map((k) => [k, values]));
    await saveCheckpoint({
      root,
      step: 1,
      rank: 0,
      worldSize: 1,
      shard: { meta: { strategy: 'test', t: 1, params: big, pieces }, arrays },
      common: {},
    });
    const ck = await openCheckpoint(join(root, stepDirName(1)));
    const [got] = await ck.source.read([{ kind: 'm', name: 'w', offset: 70_000, length: 10 }]);
    expect([...got]).toEqual([...values.subarray(70_000, 70_010)]);
    // One 64 KiB block of the 2.4 MB of state.
    expect(ck.source.bytesRead).toBe(65536);
  });

  it('still loads a checkpoint of the first format (ZeRO shards with a partition layout)', async () => {
    const dir = join(tmp(), stepDirName(4));
    const part = FlatPartition.fromGroups([{ name: 'g', params: PARAMS }], 2);
    const values = new Map(PARAMS.map((p) => [p.name, full('param', p.name, 4)]));
    const files: Record<string, { bytes: number; sha256: string }> = {};
    const { mkdirSync } = await import('node:fs');
    mkdirSync(dir, { recursive: true });
    for (const rank of [0, 1]) {
      const state = {
        meta: { strategy: 'zero1', t: 4, worldSize: 2, rank, layout: { groups: [{ name: 'g', params: PARAMS }] } },
        arrays: new Map([
          ['shard/param', part.shardFromValues(values, rank)],
          ['shard/m', part.shardFromValues(values, rank)],
          ['shard/v', part.shardFromValues(values, rank)],
        ]),
      };
      const bytes = encodeShard(state);
      writeFileSync(join(dir, shardFile(rank)), bytes);
      files[shardFile(rank)] = { bytes: bytes.length, sha256: sha256(bytes) };
    }
    const manifest = { format: 'zeroring-checkpoint-1', step: 4, worldSize: 2, files };
    writeFileSync(join(dir, 'manifest.json'), JSON.stringify(manifest));
    const ck = await openCheckpoint(dir);
    expect(ck.source.t).toBe(4);
    expect(await ck.source.read([whole('b'), whole('a', 'v')])).toEqual([full('param', 'b', 4), full('param', 'a', 4)]);
  });

  it('keeps only the newest `keep` complete checkpoints', async () => {
    const root = tmp();
    for (const s of [1, 2, 3, 4]) await save(root, s, 2);
    expect(existsSync(join(root, stepDirName(1)))).toBe(false);
    expect(existsSync(join(root, stepDirName(2)))).toBe(false);
    expect(existsSync(join(root, stepDirName(3)))).toBe(true);
    expect(existsSync(join(root, stepDirName(4)))).toBe(true);
  });
});
