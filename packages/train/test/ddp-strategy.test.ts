// DDP buckets and DDPStrategy in one process: the bucket plan follows the engine's gradient
// order; with one rank DDP is LocalStrategy bit for bit (also with noSync accumulation); with two
// real process groups in this process, bucket all-reduces are issued while backward still runs,
// rank 0's parameters are broadcast, and both ranks end identical.
import { memoryStateSource } from '../src/state-source.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '@zeroring/backend';
import { initProcessGroup, type ProcessGroup } from '@zeroring/comm';
import { freePort } from '@zeroring/comm';
import { BlockwiseEngine } from '../src/engine.ts';
import { paramCount, uniqueParams, type NamedTensors } from '../src/model.ts';
import { LocalStrategy } from '../src/strategies/local.ts';
import { DDPStrategy } from '../src/strategies/ddp.ts';
import { gradientOrder, planBuckets, BucketError } from '../src/strategies/buckets.ts';
import { DistributedDataParallel } from '../src/distributed-data-parallel.ts';
import { createToyModel, toyBatch } from './toy-model.ts';

const cfg = { vocab: 11, seqLen: 6, dim: 8, layers: 3 };

beforeAll(async () => {
  await initBackend('cpu');
});

describe('planBuckets', () => {
  const model = createToyModel(cfg);

  it('orders parameters as backward emits them: last block first, tied wte with the first block', () => {
    const order = gradientOrder(model).map((p) => p.name);
    expect(order.slice(0, 2)).toEqual(['lnf.g', 'lnf.b']);
    expect(order.slice(2, 8)).toEqual(['h2.ln.g', 'h2.ln.b', 'h2.fc.w', 'h2.fc.b', 'h2.proj.w', 'h2.proj.b']);
    expect(order.slice(-2)).toEqual(['wte', 'wpe']);
    expect(new Set(order).size).toBe(uniqueParams(model).length);
  });

  // Toy sizes (dim 8): head's own params (lnf) 64 B, each h block 2272 B, embed (wte, wpe) 544 B.
  const blockOf = (name: string) => gradientOrder(model).find((p) => p.name === name)!.block;

  it('closes a bucket at its cap, or at a block boundary the next block would overflow; slots tile each flat', () => {
    const bytes = 1000;
    const plan = planBuckets(model, bytes);
    const order = gradientOrder(model);
    const total = uniqueParams(model).reduce((n, p) => n + paramCount(p), 0);
    expect(plan.totalElems).toBe(total);
    expect(plan.buckets.reduce((n, b) => n + b.elems, 0)).toBe(total);
    const blockElems = (block: number) => order.filter((p) => p.block === block).reduce((n, p) => n + paramCount(p), 0);
    plan.buckets.forEach((b, i) => {
      if (i < plan.buckets.length - 1) {
        const lastSlot = b.slots[b.slots.length - 1];
        const next = plan.buckets[i + 1].slots[0];
        if (b.elems * 4 >= bytes) {
          // Full: without its last parameter it would not have been full yet.
          expect((b.elems - lastSlot.size) * 4).toBeLessThan(bytes);
        } else {
          // Closed early: at a block boundary, because the next block would not have fitted.
          expect(blockOf(next.name)).not.toBe(blockOf(lastSlot.name));
          expect((b.elems + blockElems(blockOf(next.name))) * 4).toBeGreaterThan(bytes);
        }
      }
      let off = 0;
      for (const s of b.slots) {
        expect(s).toMatchObject({ bucket: i, offset: off });
        off += s.size;
      }
      expect(off).toBe(b.elems);
    });
    // An h block (2272 B) is larger than the cap: split inside it, at parameter granularity.
    expect(plan.buckets.filter((b) => b.slots.every((s) => blockOf(s.name) === 3)).length).toBeGreaterThan(1);
    expect(planBuckets(model).buckets).toHaveLength(1); // the default caps (1 MiB first, 25 MiB) hold the toy model
    expect(() => planBuckets(model, 0)).toThrow(BucketError);
    expect(() => planBuckets(model, { firstBucketBytes: 0 })).toThrow(/firstBucketBytes 0/);
  });

  it('ends buckets at block boundaries: each bucket holds whole blocks when they fit', () => {
    // Cap 3000 B: head + h2 (2336 B; h1 would overflow), h1 alone (2272 B), h0 + embed (2816 B).
    const plan = planBuckets(model, { bucketBytes: 3000, firstBucketBytes: 3000 });
    const blocks = plan.buckets.map((b) => [...new Set(b.slots.map((s) => blockOf(s.name)))]);
    expect(blocks).toEqual([[4, 3], [2], [1, 0]]);
    expect(plan.buckets.map((b) => b.elems * 4)).toEqual([2336, 2272, 2816]);
  });

  it('gives the first bucket its own cap (firstBucketBytes), so the last blocks are reduced first and early', () => {
    // First cap fits head + h2; the rest (25 MiB cap) goes in one bucket.
    const plan = planBuckets(model, { firstBucketBytes: 2336 });
    expect(plan.buckets).toHaveLength(2);
    expect(plan.buckets[0].slots.map((s) => s.name)).toEqual([
      'lnf.g',
      'lnf.b',
      'h2.ln.g',
      'h2.ln.b',
      'h2.fc.w',
      'h2.fc.b',
      'h2.proj.w',
      'h2.proj.b',
    ]);
    expect(plan.buckets[1].elems * 4).toBe(2 * 2272 + 544);
    // The first cap never exceeds bucketBytes: a smaller bucketBytes caps the first bucket too.
    const small = planBuckets(model, { bucketBytes: 64, firstBucketBytes: 1 << 20 });
    expect(small.buckets[0].slots.map((s) => s.name)).toEqual(['lnf.g', 'lnf.b']);
    // DDPStrategy passes the option through and checks it.
    expect(
      () =>
        new DDPStrategy(
          { rank: 0, worldSize: 1, allReduce: async () => undefined, broadcast: async () => undefined },
          { firstBucketBytes: Number.NaN },
        ),
    ).toThrow(/firstBucketBytes NaN/);
  });
});

/** Two process groups in this process, over real sockets. */
async function twoRanks(): Promise<[ProcessGroup, ProcessGroup]> {
  const masterPort = await freePort();
  const opts = { worldSize: 2, masterAddr: '127.0.0.1', masterPort, token: 'ddp-unit', timeoutMs: 60_000 };
  return Promise.all([initProcessGroup({ ...opts, rank: 0 }), initProcessGroup({ ...opts, rank: 1 })]) as Promise<
    [ProcessGroup, ProcessGroup]
  >;
}

describe('DDPStrategy', () => {
  let solo: ProcessGroup;
  beforeAll(async () => {
    solo = await initProcessGroup({ rank: 0, worldSize: 1 });
  });
  afterAll(async () => {
    await solo.destroy();
  });

  it('with one rank equals LocalStrategy bit for bit, including noSync accumulation and clipping', async () => {
    const model = createToyModel(cfg);
    const init = model.initParams(3);
    const engine = new BlockwiseEngine(model);
    const local = new LocalStrategy();
    const ddp = new DDPStrategy(solo, { bucketBytes: 512 });
    await local.setup(model, init);
    await ddp.setup(model, init);
    expect(ddp.buckets.length).toBeGreaterThan(4);
    for (let step = 0; step < 3; step++) {
      const a = toyBatch(100 + step, 3, cfg.seqLen, cfg.vocab);
      const b = toyBatch(200 + step, 3, cfg.seqLen, cfg.vocab);
      await engine.forwardBackward(a.input, a.targets, local, local);
      await engine.forwardBackward(b.input, b.targets, local, local);
      await local.finishStep({ lr: 1e-2, step, maxGradNorm: 0.5, gradScale: 0.5 });
      await ddp.noSync(() => engine.forwardBackward(a.input, a.targets, ddp, ddp));
      await engine.forwardBackward(b.input, b.targets, ddp, ddp);
      await ddp.finishStep({ lr: 1e-2, step, maxGradNorm: 0.5, gradScale: 0.5 });
      tf.dispose([a.input, a.targets, b.input, b.targets]);
    }
    expect(await ddp.fullParams()).toEqual(await local.fullParams());
    const mem = ddp.memory();
    const n = uniqueParams(model).reduce((s, p) => s + paramCount(p), 0);
    expect(mem.params!.device).toBe(4 * n);
    expect(mem.optimizer!.device).toBe(8 * n);
    expect(mem.grads!.device).toBeGreaterThanOrEqual(4 * n);
    expect(mem.gathered!.host).toBeGreaterThan(0);
    // Checkpoint round trip through the saved state, and into another strategy.
    const state = await ddp.saveState();
    expect(state.meta.strategy).toBe('ddp');
    const again = new DDPStrategy(solo);
    await again.setup(model, model.initParams(9));
    await again.loadState(memoryStateSource([state]));
    expect(await again.fullParams()).toEqual(await ddp.fullParams());
    await local.loadState(memoryStateSource([state]));
    expect(await local.fullParams()).toEqual(await ddp.fullParams());
    await Promise.all([local.dispose(), ddp.dispose(), again.dispose()]);
  });

  it('uploading one buffer per bucket and slicing it on the device gives the same result', async () => {
    const model = createToyModel(cfg);
    const init = model.initParams(5);
    const engine = new BlockwiseEngine(model);
    const [host, device] = [
      new DDPStrategy(solo, { bucketBytes: 512, splitOnDevice: false }),
      new DDPStrategy(solo, { bucketBytes: 512, splitOnDevice: true }),
    ];
    for (const s of [host, device]) {
      await s.setup(model, init);
      for (let step = 0; step < 2; step++) {
        const a = toyBatch(300 + step, 2, cfg.seqLen, cfg.vocab);
        await engine.forwardBackward(a.input, a.targets, s, s);
        await s.finishStep({ lr: 1e-2, step });
        tf.dispose([a.input, a.targets]);
      }
    }
    expect(await device.fullParams()).toEqual(await host.fullParams());
    await Promise.all([host.dispose(), device.dispose()]);
  });

  it('reduces gradients that only saw noSync passes at finishStep, and names missing gradients', async () => {
    const model = createToyModel(cfg);
    const init = model.initParams(4);
    const engine = new BlockwiseEngine(model);
    const local = new LocalStrategy();
    const ddp = new DDPStrategy(solo, { bucketBytes: 512 });
    await local.setup(model, init);
    await ddp.setup(model, init);
    const a = toyBatch(7, 2, cfg.seqLen, cfg.vocab);
    await engine.forwardBackward(a.input, a.targets, local, local);
    await local.finishStep({ lr: 1e-2, step: 0 });
    await ddp.noSync(() => engine.forwardBackward(a.input, a.targets, ddp, ddp));
    await ddp.finishStep({ lr: 1e-2, step: 0 });
    expect(await ddp.fullParams()).toEqual(await local.fullParams());
    // Gradients for one block only: finishStep names what is missing.
    const g: NamedTensors = { 'lnf.g': tf.zeros([cfg.dim]), 'lnf.b': tf.zeros([cfg.dim]) };
    ddp.onBlockGrads(model.blocks.length - 1, g);
    await expect(ddp.finishStep({ lr: 1e-2, step: 1 })).rejects.toThrow(/no gradient for "h2.ln.g"/);
    await expect(ddp.finishStep({ lr: 1e-2, step: 1 })).rejects.toThrow(/no gradients/);
    tf.dispose([a.input, a.targets]);
    await Promise.all([local.dispose(), ddp.dispose()]);
  });

  it('with two ranks: broadcasts rank 0, issues bucket all-reduces during backward, ranks end identical', async () => {
    const pgs = await twoRanks();
    try {
      const model = createToyModel(cfg);
      const events: string[][] = [[], []];
      const ddps = await Promise.all(
        pgs.map((pg, r) => {
          // The real process group, with its allReduce calls recorded as they are issued.
          const comm = {
            rank: pg.rank,
            worldSize: pg.worldSize,
            broadcast: (buf: Float32Array, root: number) => pg.broadcast(buf, root),
            allReduce: (buf: Float32Array, o?: { op?: 'sum' | 'avg' | 'max' | 'min' }) => {
              events[r].push(`allReduce ${buf.length}`);
              return pg.allReduce(buf, o);
            },
          };
          return DistributedDataParallel.create(model, comm, { seed: 10 + r, bucketBytes: 256 });
        }),
      );
      for (const [r, d] of ddps.entries()) {
        const inner = d.strategy.onBlockGrads.bind(d.strategy);
        d.strategy.onBlockGrads = (block, grads) => {
          events[r].push(`grads ${block}`);
          inner(block, grads);
        };
      }
      // Different seeds, yet both start from rank 0's parameters.
      expect(await ddps[1].parameters()).toEqual(await ddps[0].parameters());
      expect(await ddps[0].parameters()).toEqual(model.initParams(10));

      for (let step = 0; step < 2; step++) {
        const losses = await Promise.all(
          ddps.map(async (d, r) => {
            const { input, targets } = toyBatch(1000 * step + r, 2, cfg.seqLen, cfg.vocab);
            const loss = await d.forwardBackward(input, targets);
            tf.dispose([input, targets]);
            await d.step({ lr: 1e-2, maxGradNorm: 1 });
            return loss;
          }),
        );
        expect(losses[0]).not.toBe(losses[1]); // different data per rank
      }
      expect(await ddps[1].parameters()).toEqual(await ddps[0].parameters());
      for (const ev of events) {
        // The first bucket's all-reduce goes out before backward reaches block 0.
        const firstReduce = ev.findIndex((e) => e.startsWith('allReduce'));
        const lastBlock = ev.indexOf('grads 0');
        expect(firstReduce, 'no bucket all-reduce was issued').not.toBe(-1);
        expect(firstReduce).toBeLessThan(lastBlock);
        expect(ev.filter((e) => e.startsWith('allReduce'))).toHaveLength(2 * ddps[0].strategy.buckets.length);
      }
      expect(events[0].filter((e) => e.startsWith('allReduce'))).toEqual(
        events[1].filter((e) => e.startsWith('allReduce')),
      );
      await Promise.all(ddps.map((d) => d.dispose()));
    } finally {
      await Promise.all(pgs.map((pg) => pg.destroy()));
    }
  }, 120_000);
});
