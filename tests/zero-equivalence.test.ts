// ZeRO exactness with real processes: for N = 2 and N = 3 (3 makes every partition group's
// padding and shard boundaries uneven), zero1, zero2 and zero3, each with and without CPU
// offload, end K steps of AdamW with global-norm clipping at the parameters DDP reaches in the
// same processes (max relative difference < 1e-5; the attention key bias in absolute terms, see
// fixtures/zero/compare.ts), and every rank holds the same full parameters. The N = 2 job
// accumulates two micro-batches per step, so gradient shards accumulate too; ZeRO-1, which
// reduces the accumulated local gradient once, is held against DDP under noSync, which sums in
// the same order (DDP and ZeRO-2/3 reduce every micro-batch). The N = 3 job uses one batch per
// step: with three summands the ring's chunk boundaries (DDP's buckets vs ZeRO's groups) change
// the order of float additions, and where a gradient element is a near-cancelling sum AdamW's
// normalisation turns that rounding into up to ~1e-5 of a small-initialised weight matrix within
// a few accumulated steps — a property of any two reduction orders, not of ZeRO. One launch per N
// runs every configuration one after the other.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchForResult } from './fixtures/launch/helpers.ts';
import { compareParams, type Params } from './fixtures/zero/compare.ts';

const worker = fileURLToPath(new URL('./fixtures/zero/equivalence-worker.ts', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'zr-zero-eq-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const EMBD = 32; // nEmbd of the worker's GPT
const CONFIGS = [
  { strategy: 'ddp', offload: false },
  { strategy: 'ddp', offload: false, noSync: true },
  ...['zero1', 'zero2', 'zero3'].flatMap((strategy) => [
    { strategy, offload: false },
    { strategy, offload: true },
  ]),
];
type Place = { device: number; host: number };
type Result = Record<
  string,
  {
    memory: Record<string, Place>;
    tensorGrowth: number;
    shardLength?: number;
    gather?: { gathers: number; acquires: number; prefetchHits: number };
  }
>;

function run(nproc: number, batch: number, accum: number): Promise<Result> {
  const out = join(dir, `n${nproc}-{config}-{rank}.json`);
  return launchForResult(nproc, worker, { steps: 3, batch, accum, seed: 7, out, configs: CONFIGS });
}

const read = (nproc: number, config: string, rank: number): Params =>
  JSON.parse(readFileSync(join(dir, `n${nproc}-${config}-${rank}.json`), 'utf8')) as Params;

function check(nproc: number, res: Result): void {
  for (const c of CONFIGS.filter((x) => x.strategy !== 'ddp')) {
    const key = `${c.strategy}${c.offload ? '+offload' : ''}`;
    // Like-for-like summation order: ZeRO-1 reduces the accumulated local gradient once per step.
    const ref = read(nproc, c.strategy === 'zero1' ? 'ddp-nosync' : 'ddp', 0);
    const r0 = read(nproc, key, 0);
    for (let r = 1; r < nproc; r++) expect(read(nproc, key, r), `${key}: rank ${r} vs rank 0`).toEqual(r0);
    const d = compareParams(r0, ref, EMBD);
    expect(d.sameNames, key).toBe(true);
    expect(d.rel, `${key} vs ${c.strategy === 'zero1' ? 'ddp-nosync' : 'ddp'}, worst at ${d.relAt}`).toBeLessThan(1e-5);
    expect(d.keyBiasAbs, `${key} key bias`).toBeLessThan(1e-5);

    const { memory, tensorGrowth, shardLength } = res[key];
    expect(tensorGrowth, `${key} leaks tensors`).toBe(0);
    const L = shardLength!;
    const stage = Number(c.strategy.slice(4));
    // What each stage keeps, by place (sharded.ts): the optimizer moments of the shard only.
    if (c.offload) {
      expect(memory.optimizer, key).toEqual({ device: 0, host: 8 * L });
      expect(memory.grads.host, key).toBe(4 * L);
    } else {
      expect(memory.optimizer, key).toEqual({ device: 8 * L, host: 0 });
    }
    const psi = memory.params.device || 0;
    if (stage === 3) expect(memory.params.device, key).toBe(0);
    else expect(psi, key).toBeGreaterThan(nproc * 4 * L * 0.9);
    if (stage >= 2) expect(memory.grads.device, key).toBe(0);
  }
  // ZeRO-3 gathers each block before forward and backward, and prefetches (some acquires find
  // their gather already done).
  for (const key of ['zero3', 'zero3+offload']) {
    const g = res[key].gather!;
    expect(g.acquires, key).toBeGreaterThan(0);
    expect(g.gathers, key).toBeGreaterThanOrEqual(g.acquires);
  }
}

describe('ZeRO-1/2/3 ± offload == DDP (real processes, cpu backend, GPT C=32 L=2 T=16)', () => {
  it('2 ranks × 2 accumulated micro-batches of 2, 3 steps', async () => {
    check(2, await run(2, 2, 2));
  }, 600_000);

  it('3 ranks (uneven partition) × batch 3, 3 steps', async () => {
    check(3, await run(3, 3, 1));
  }, 600_000);
});
