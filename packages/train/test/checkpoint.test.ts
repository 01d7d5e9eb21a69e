import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CheckpointError,
  decodeShard,
  encodeShard,
  loadLatestCheckpoint,
  saveCheckpoint,
  stepDirName,
  shardFile,
  resolveCheckpointDir,
} from '../src/checkpoint.ts';
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

function shard(step: number): ShardState {
  return {
    meta: { strategy: 'test', t: step },
    arrays: new Map([
      ['param/a', Float32Array.from([1.5, -2, step, Number.MIN_VALUE])],
      ['m/a', Float32Array.from({ length: 7 }, (_, i) => i * 0.1 + step)],
    ]),
  };
}

async function save(root: string, step: number, keep = 5) {
  return saveCheckpoint({
    root,
    step,
    rank: 0,
    worldSize: 1,
    shard: shard(step),
    common: { 'trainer.json': { nextStep: step }, 'extra.bin': Buffer.from([1, 2, 3]) },
    keep,
  });
}

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
    const ck = await loadLatestCheckpoint(root, 0, 1);
    expect(ck.step).toBe(20);
    expect(ck.common['trainer.json']).toEqual({ nextStep: 20 });
    expect(ck.shard.meta.t).toBe(20);
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
    const ck = await loadLatestCheckpoint(root, 0, 1, (m) => warnings.push(m));
    expect(ck.step).toBe(10);
    expect(warnings.join('\n')).toMatch(/shard-rank0\.bin is corrupt: .*sha256 .*expected/);
    expect(ck.skipped).toHaveLength(1);
  });

  it('skips a checkpoint whose manifest was never written (crash mid-save)', async () => {
    const root = tmp();
    await save(root, 10);
    await save(root, 20);
    rmSync(join(root, stepDirName(20), 'manifest.json'));
    const warnings: string[] = [];
    expect((await loadLatestCheckpoint(root, 0, 1, (m) => warnings.push(m))).step).toBe(10);
    expect(warnings[0]).toMatch(/no readable manifest\.json/);
    expect(await resolveCheckpointDir(root)).toBe(join(root, stepDirName(10)));
  });

  it('throws a CheckpointError listing every reason when nothing is usable', async () => {
    const root = tmp();
    await save(root, 10);
    writeFileSync(join(root, stepDirName(10), 'trainer.json'), '{"nextStep": 11}');
    await expect(loadLatestCheckpoint(root, 0, 1)).rejects.toThrow(CheckpointError);
    await expect(loadLatestCheckpoint(root, 0, 1)).rejects.toThrow(/trainer\.json is corrupt/);
    await expect(loadLatestCheckpoint(join(root, 'nope'), 0, 1)).rejects.toThrow(/none found/);
  });

  it('refuses a checkpoint saved by another world size', async () => {
    const root = tmp();
    await save(root, 10);
    await expect(loadLatestCheckpoint(root, 0, 2)).rejects.toThrow(/saved by 1 ranks, expected 2/);
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
