// Checkpoints cannot be half-written: a process SIGKILLed while saving leaves either a complete
// checkpoint or one that loading recognises as incomplete and skips for the previous complete
// one, saying why. Killed at fixed phases of the save (before any file, after every file but
// before the manifest, while overwriting a complete checkpoint of the same step) and at
// arbitrary moments during the file writes.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { CheckpointError, loadLatestCheckpoint, type StateSource } from '@zeroring/train';
import { shardFor } from './fixtures/faults/ckpt-shard.ts';

const WRITER = fileURLToPath(new URL('./fixtures/faults/ckpt-writer.ts', import.meta.url));
const base = mkdtempSync(join(tmpdir(), 'zr-ckpt-kill-'));
afterAll(() => rmSync(base, { recursive: true, force: true }));
const FLOATS = 4 << 20; // 16 MiB shard: long enough a save to be caught in the middle

/** Runs the writer into a fresh root; kills it `killAfterMs` after "saving 2" (if given). */
function writer(
  env: Record<string, string>,
  killAfterMs?: number,
): Promise<{ root: string; signal: NodeJS.Signals | null; out: string }> {
  const root = mkdtempSync(join(base, 'run-'));
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', WRITER, root], {
      env: { ...process.env, FLOATS: String(FLOATS), ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d;
      if (killAfterMs !== undefined && out.includes('saving 2')) setTimeout(() => child.kill('SIGKILL'), killAfterMs);
    });
    child.stderr.on('data', (d: Buffer) => (out += d));
    const guard = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.once('close', (_code, signal) => {
      clearTimeout(guard);
      resolve({ root, signal, out });
    });
  });
}

/** The newest complete checkpoint under root, with the parameter it holds read back whole. */
async function load(root: string, warn?: (m: string) => void) {
  let got: Float32Array = new Float32Array(0);
  const read = async (ck: { source: StateSource }) => {
    [got] = await ck.source.read([{ kind: 'param', name: 'w', offset: 0, length: FLOATS }]);
  };
  return { ...(await loadLatestCheckpoint(root, read, { warn })), got };
}

function expectShard(loaded: Awaited<ReturnType<typeof load>>): void {
  const want = shardFor(loaded.step, FLOATS).arrays.get('param')!;
  const got = loaded.got;
  expect(got.length).toBe(want.length);
  expect(Buffer.compare(Buffer.from(got.buffer, got.byteOffset, got.byteLength), Buffer.from(want.buffer))).toBe(0);
}

describe('a checkpoint save killed at any moment', () => {
  for (const [what, env] of [
    ['before any file of the new checkpoint', { KILL_AT_BARRIER: '1' }],
    ['after every file but before the manifest', { KILL_AT_BARRIER: '2' }],
    ['while overwriting a complete checkpoint of the same step', { KILL_AT_BARRIER: '2', RESAVE: '1' }],
  ] as const) {
    it(`killed ${what}: the previous complete checkpoint is loaded, the incomplete one named`, async () => {
      const r = await writer(env);
      expect(r.signal, r.out).toBe('SIGKILL');
      const warnings: string[] = [];
      const loaded = await load(r.root, (m) => warnings.push(m));
      expect(loaded.step).toBe(1);
      expectShard(loaded);
      expect(loaded.skipped.map((s) => s.dir)).toEqual([join(r.root, 'step-00000002')]);
      expect(loaded.skipped[0]!.reason).toMatch(
        /step-00000002: no readable manifest\.json .*the save did not complete/,
      );
      expect(warnings[0]).toMatch(/unusable, falling back to the previous one/);
    });
  }

  it('killed at arbitrary moments: always a complete, bit-exact checkpoint (the new one or the previous)', async () => {
    const runs = await Promise.all([0, 5, 15, 40, 80, 160].map((ms) => writer({}, ms)));
    const steps: number[] = [];
    for (const r of runs) {
      const loaded = await load(r.root);
      expectShard(loaded);
      steps.push(loaded.step);
      // A step-2 directory without a complete save must have been reported, never used.
      if (loaded.step === 1 && existsSync(join(r.root, 'step-00000002'))) expect(loaded.skipped).toHaveLength(1);
      // Temporary files may be left by the kill; they are never mistaken for checkpoint files.
      for (const d of readdirSync(r.root)) expect(d).toMatch(/^step-\d{8}$/);
    }
    expect(steps.every((s) => s === 1 || s === 2)).toBe(true);
  });

  it('nothing complete at all: a CheckpointError that lists why each one was rejected', async () => {
    const r = await writer({ KILL_AT_BARRIER: '2' });
    rmSync(join(r.root, 'step-00000001', 'manifest.json'));
    await expect(load(r.root)).rejects.toThrow(CheckpointError);
    await expect(load(r.root)).rejects.toThrow(
      new RegExp(
        'no complete checkpoint under [^:]*: ' +
          '.*step-00000002: no readable manifest.*; .*step-00000001: no readable manifest',
      ),
    );
  });
});
