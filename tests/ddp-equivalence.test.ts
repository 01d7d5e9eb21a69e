// DDP equivalence with real processes: N ranks of DistributedDataParallel with batch b each end
// with the parameters one process reaches with batch N·b (LocalStrategy) after K steps of AdamW
// with clipping, for N = 2 and 3, and with noSync accumulation (k micro-batches per rank, one
// all-reduce) likewise. Every rank also ends bit-identical to rank 0.
//
// Tolerance: max over tensors of max|ddp - ref| / max|ref| < 1e-5. One slice is compared in
// absolute terms instead: the attention *key* bias. Adding a constant vector to every key shifts
// all of a query's scores by the same amount, which softmax ignores, so its true gradient is
// exactly zero and what backward produces is float rounding (~1e-10). AdamW divides by the
// gradient's own magnitude, so that parameter moves by rounding noise in *any* implementation
// (two summation orders of the same batch disagree there just as much); its values stay ~1e-7.
import { describe, expect, it, afterAll } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchForResult, repoRoot } from './fixtures/launch/helpers.ts';
// The ZeRO tests' comparison (same tolerance rule as explained above).
import { compareParams, type Params } from './fixtures/zero/compare.ts';
import { once } from './fixtures/once.ts';

const worker = fileURLToPath(new URL('./fixtures/ddp/equivalence-worker.ts', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'zr-ddp-eq-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const STEPS = 3;
const SEED = 5;
const EMBD = 32; // nEmbd of the worker's GPT config

type Backend = 'cpu' | 'wasm';

function runLocal(nproc: number, batch: number, accum: number, out: string, backend: Backend = 'cpu'): Promise<void> {
  const args = JSON.stringify({ mode: 'local', steps: STEPS, batch, accum, nproc, backend, seed: SEED, out });
  return new Promise((resolve, reject) => {
    const env = { ...process.env };
    for (const k of ['RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'LOCAL_WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'])
      delete env[k];
    const child = spawn(process.execPath, ['--import', 'tsx', worker, args], {
      cwd: repoRoot,
      env,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d));
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve() : reject(new Error(`reference run exited ${code}: ${err}`))));
  });
}

async function runDDP(
  nproc: number,
  batch: number,
  accum: number,
  bucketBytes: number | undefined,
  out: string,
  backend: Backend = 'cpu',
): Promise<{ buckets: number; memory: Record<string, { device: number; host: number }> }> {
  const arg = { mode: 'ddp', steps: STEPS, batch, accum, nproc, bucketBytes, backend, seed: SEED, out };
  return launchForResult(nproc, worker, arg);
}

const read = (file: string): Params => JSON.parse(readFileSync(file, 'utf8')) as Params;

/** Rank 0's parameters match the reference: relative error, the key bias in absolute terms. */
function expectMatchesReference(pattern: string, refFile: string): void {
  const c = compareParams(read(pattern.replace('{rank}', '0')), read(refFile), EMBD);
  expect(c.sameNames, 'same tensor names as the reference').toBe(true);
  expect(c.rel, `worst at ${c.relAt}`).toBeLessThan(1e-5);
  expect(c.keyBiasAbs).toBeLessThan(1e-5);
}

function expectRanksIdentical(pattern: string, nproc: number): void {
  const r0 = read(pattern.replace('{rank}', '0'));
  for (let r = 1; r < nproc; r++) expect(read(pattern.replace('{rank}', String(r))), `rank ${r} vs rank 0`).toEqual(r0);
}

describe('DDP equivalence (real processes, cpu backend unless named, GPT C=32 L=2 T=16)', () => {
  const ref8 = join(dir, 'ref-8.json');
  const ref9 = join(dir, 'ref-9.json');
  // The single-process references, each trained once by the first test that needs it.
  const reference8 = once(() => runLocal(2, 4, 1, ref8));
  const reference9 = once(() => runLocal(3, 3, 1, ref9));

  it('2 ranks × batch 4, 8 KiB buckets == 1 process × batch 8', async () => {
    await reference8();
    const out = join(dir, 'ddp2-{rank}.json');
    const res = await runDDP(2, 4, 1, 8192, out);
    expect(res.buckets).toBeGreaterThan(3); // several all-reduces in flight per step
    expect(res.memory.params.device).toBeGreaterThan(0);
    expect(res.memory.optimizer.device).toBe(2 * res.memory.params.device);
    expectRanksIdentical(out, 2);
    expectMatchesReference(out, ref8);
  }, 300_000);

  it('noSync: 2 ranks × 2 accumulated micro-batches of 2 == 1 process × batch 8', async () => {
    const out = join(dir, 'acc2-{rank}.json');
    await reference8();
    await runDDP(2, 2, 2, 8192, out);
    expectRanksIdentical(out, 2);
    expectMatchesReference(out, ref8);
  }, 300_000);

  it('3 ranks × batch 3, default buckets (1 MiB first, 25 MiB) == 1 process × batch 9', async () => {
    await reference9();
    const out = join(dir, 'ddp3-{rank}.json');
    const res = await runDDP(3, 3, 1, undefined, out);
    expect(res.buckets).toBe(1);
    expectRanksIdentical(out, 3);
    expectMatchesReference(out, ref9);
  }, 300_000);

  it('wasm backend: 2 ranks × batch 4 == 1 process × batch 8 (buckets read from the heap, reused)', async () => {
    const ref = join(dir, 'ref-8-wasm.json');
    await runLocal(2, 4, 1, ref, 'wasm');
    const out = join(dir, 'wasm2-{rank}.json');
    const res = await runDDP(2, 4, 1, 8192, out, 'wasm');
    expect(res.buckets).toBeGreaterThan(3);
    expectRanksIdentical(out, 2);
    expectMatchesReference(out, ref);
  }, 300_000);

  it('noSync: 3 ranks × 3 accumulated micro-batches of 1 == 1 process × batch 9', async () => {
    const out = join(dir, 'acc3-{rank}.json');
    await reference9();
    await runDDP(3, 1, 3, 4096, out);
    expectRanksIdentical(out, 3);
    expectMatchesReference(out, ref9);
  }, 300_000);
});
