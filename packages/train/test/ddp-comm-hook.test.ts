// DDP with a comm hook (DDPStrategyOptions.commHook), two ranks over real sockets in this
// process: a user's hook gets every bucket of every step in bucket order, with its step and the
// shapes of its parameters, and one that delegates to allReduceHook trains exactly as DDP without
// a hook; bf16 keeps the ranks identical and near the float32 run; a hook that resolves with the
// wrong length fails the step by name; a restored strategy hands the hook the restored step; the
// ZeRO stages refuse a hook.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '@zeroring/backend';
import {
  allReduceHook,
  bf16CompressHook,
  ConfigError,
  freePort,
  initProcessGroup,
  type CommHook,
  type GradBucket,
  type ProcessGroup,
} from '@zeroring/comm';
import { DistributedDataParallel, type DistributedDataParallelOptions } from '../src/distributed-data-parallel.ts';
import { memoryStateSource } from '../src/state-source.ts';
import { createStrategy } from '../src/strategies/create.ts';
import { createToyModel, toyBatch } from './toy-model.ts';

const cfg = { vocab: 11, seqLen: 6, dim: 8, layers: 3 };
const model = createToyModel(cfg);

let pgs: [ProcessGroup, ProcessGroup];

beforeAll(async () => {
  await initBackend('cpu');
  const masterPort = await freePort();
  const opts = { worldSize: 2, masterAddr: '127.0.0.1', masterPort, token: 'hook-unit', timeoutMs: 60_000 };
  pgs = (await Promise.all([initProcessGroup({ ...opts, rank: 0 }), initProcessGroup({ ...opts, rank: 1 })])) as [
    ProcessGroup,
    ProcessGroup,
  ];
});

afterAll(async () => {
  await Promise.all(pgs.map((pg) => pg.destroy()));
});

type Ddps = [DistributedDataParallel, DistributedDataParallel];

async function create(opts: (rank: number) => DistributedDataParallelOptions): Promise<Ddps> {
  const ddps = await Promise.all(
    pgs.map((pg, r) => DistributedDataParallel.create(model, pg, { seed: 3, bucketBytes: 256, ...opts(r) })),
  );
  return ddps as Ddps;
}

/** `steps` steps on different data per rank; resolves with rank 0's parameters. */
async function train(ddps: Ddps, steps: number, from = 0): Promise<Map<string, Float32Array>> {
  for (let step = from; step < from + steps; step++) {
    await Promise.all(
      ddps.map(async (d, r) => {
        const { input, targets } = toyBatch(1000 * step + r, 2, cfg.seqLen, cfg.vocab);
        await d.forwardBackward(input, targets);
        tf.dispose([input, targets]);
        await d.step({ lr: 1e-2, maxGradNorm: 1 });
      }),
    );
  }
  const [p0, p1] = await Promise.all(ddps.map((d) => d.parameters()));
  expect(p1).toEqual(p0);
  return p0!;
}

/** A user's hook: records what it is given, then averages as DDP would. */
function recording(seen: { index: number; step: number; length: number; params: GradBucket['params'] }[]): CommHook {
  return (bucket, group) => {
    seen.push({ index: bucket.index, step: bucket.step, length: bucket.buffer.length, params: bucket.params });
    return allReduceHook(bucket, group);
  };
}

function maxRelDiff(a: Map<string, Float32Array>, b: Map<string, Float32Array>): number {
  let worst = 0;
  for (const [name, x] of a) {
    const y = b.get(name)!;
    let scale = 0;
    let diff = 0;
    for (let i = 0; i < x.length; i++) {
      scale = Math.max(scale, Math.abs(x[i]!));
      diff = Math.max(diff, Math.abs(x[i]! - y[i]!));
    }
    worst = Math.max(worst, diff / scale);
  }
  return worst;
}

describe('DDP with a comm hook', () => {
  let plain: Map<string, Float32Array>;

  beforeAll(async () => {
    const ddps = await create(() => ({}));
    plain = await train(ddps, 2);
    await Promise.all(ddps.map((d) => d.dispose()));
  }, 60_000);

  it("gets every bucket of every step in order with its parameters; allReduceHook is DDP's result", async () => {
    const seen: Parameters<typeof recording>[0][] = [[], []];
    const ddps = await create((r) => ({ commHook: recording(seen[r]!) }));
    const params = await train(ddps, 2);
    const buckets = ddps[0].strategy.buckets;
    expect(buckets.length).toBeGreaterThan(2);
    for (const s of seen) {
      const expected = [0, 1].flatMap((step) => buckets.map((b) => ({ index: b.index, step, length: b.elems })));
      expect(s.map(({ index, step, length }) => ({ index, step, length }))).toEqual(expected);
      for (const { index, params: ps } of s) {
        // The parameters tile the buffer, with the shapes the model declares.
        const b = buckets[index]!;
        expect(ps.map((p) => [p.name, p.offset, p.size])).toEqual(b.slots.map((x) => [x.name, x.offset, x.size]));
        for (const p of ps)
          expect(p.shape).toEqual(model.blocks.flatMap((k) => k.params).find((q) => q.name === p.name)!.shape);
      }
    }
    expect(params).toEqual(plain);
    await Promise.all(ddps.map((d) => d.dispose()));
  }, 60_000);

  it('bf16: ranks stay identical, near the float32 run but not equal to it', async () => {
    const ddps = await create(() => ({ commHook: bf16CompressHook }));
    const params = await train(ddps, 2);
    const diff = maxRelDiff(params, plain);
    expect(diff).toBeGreaterThan(0);
    expect(diff).toBeLessThan(0.05);
    await Promise.all(ddps.map((d) => d.dispose()));
  }, 60_000);

  it('a hook resolving with the wrong length fails the step naming the bucket', async () => {
    const short: CommHook = async (bucket, group) => {
      await group.allReduce(bucket.buffer, { op: 'avg' });
      return bucket.buffer.subarray(1);
    };
    const ddps = await create(() => ({ commHook: short }));
    await expect(train(ddps, 1)).rejects.toThrow(
      /comm hook returned \d+ elements for bucket 0, expected a Float32Array/,
    );
    await Promise.all(ddps.map((d) => d.dispose()));
  }, 60_000);

  it('a restored strategy hands the hook the restored step count', async () => {
    const ddps = await create(() => ({}));
    await train(ddps, 2);
    const states = await Promise.all(ddps.map((d) => d.strategy.saveState()));
    await Promise.all(ddps.map((d) => d.dispose()));
    const seen: Parameters<typeof recording>[0][] = [[], []];
    const again = await create((r) => ({ commHook: recording(seen[r]!) }));
    await Promise.all(again.map((d) => d.strategy.loadState(memoryStateSource(states))));
    await train(again, 1, 2);
    for (const s of seen) expect(new Set(s.map((x) => x.step))).toEqual(new Set([2]));
    await Promise.all(again.map((d) => d.dispose()));
  }, 60_000);

  it('the ZeRO stages refuse a comm hook, naming the strategy', () => {
    for (const name of ['zero1', 'zero2', 'zero3'] as const) {
      expect(() => createStrategy(name, pgs[0], { offload: false, commHook: bf16CompressHook })).toThrow(ConfigError);
      expect(() => createStrategy(name, pgs[0], { offload: false, commHook: bf16CompressHook })).toThrow(
        new RegExp(`comm hook with --strategy ${name}`),
      );
    }
  });
});
