// ZeRO strategies in one process, on the toy block model (tied wte in the first and last block):
// with one rank every stage equals LocalStrategy and holds exactly its formula's model state;
// with two real process groups in this process, ranks agree, a checkpoint restored into fresh
// strategies continues bit-identically, the ranks' pieces together give the full parameters, and
// bad input (missing gradients, another rank's pieces alone) fails with a StrategyError that names it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend, tf } from '@zeroring/backend';
import { initProcessGroup, type ProcessGroup } from '@zeroring/comm';
import { freePort } from '@zeroring/comm';
import { BlockwiseEngine } from '@zeroring/train';
import { paramCount, uniqueParams, type BlockModel } from '@zeroring/train';
import { LocalStrategy } from '@zeroring/train';
import { ShardedStrategy, memoryStateSource, type ZeroStage } from '@zeroring/train';
import { StrategyError, modelStateBytes, type Strategy } from '@zeroring/train';
import { createToyModel, toyBatch } from '../packages/train/test/toy-model.ts';

const cfg = { vocab: 11, seqLen: 6, dim: 8, layers: 3 };

function maxRel(a: Map<string, Float32Array>, b: Map<string, Float32Array>): number {
  let worst = 0;
  for (const [name, ref] of b) {
    const got = a.get(name)!;
    let diff = 0;
    let scale = 0;
    for (let i = 0; i < ref.length; i++) {
      diff = Math.max(diff, Math.abs(got[i] - ref[i]));
      scale = Math.max(scale, Math.abs(ref[i]));
    }
    worst = Math.max(worst, diff / scale);
  }
  return worst;
}

/** `steps` steps of 2 accumulated micro-batches (gradScale 1/2, clipping at 0.5); `seed` picks the data. */
async function trainSteps(model: BlockModel, s: Strategy, from: number, steps: number, seed: number): Promise<void> {
  const engine = new BlockwiseEngine(model);
  for (let step = from; step < from + steps; step++) {
    for (let j = 0; j < 2; j++) {
      const b = toyBatch(seed + 10 * step + j, 2, cfg.seqLen, cfg.vocab);
      await engine.forwardBackward(b.input, b.targets, s, s);
      tf.dispose([b.input, b.targets]);
    }
    await s.finishStep({ lr: 1e-2, step, maxGradNorm: 0.5, gradScale: 0.5 });
  }
}

beforeAll(async () => {
  await initBackend('cpu');
});

describe('ZeRO with one rank', () => {
  let solo: ProcessGroup;
  beforeAll(async () => {
    solo = await initProcessGroup({ rank: 0, worldSize: 1 });
  });
  afterAll(async () => {
    await solo.destroy();
  });

  it("every stage, with and without offload, equals LocalStrategy and holds its formula's model state", async () => {
    const model = createToyModel(cfg);
    const init = model.initParams(3);
    const psi = uniqueParams(model).reduce((n, p) => n + paramCount(p), 0);
    const local = new LocalStrategy();
    await local.setup(model, init);
    await trainSteps(model, local, 0, 3, 100);
    const ref = await local.fullParams();
    for (const stage of [1, 2, 3] as ZeroStage[]) {
      for (const offload of [false, true]) {
        const s = new ShardedStrategy(solo, stage, { offload });
        await s.setup(model, init);
        const before = tf.memory().numTensors;
        await trainSteps(model, s, 0, 3, 100);
        expect(tf.memory().numTensors, `zero${stage} offload=${offload} leaks tensors`).toBe(before);
        expect(maxRel(await s.fullParams(), ref), `zero${stage} offload=${offload}`).toBeLessThan(
          offload ? 1e-5 : 1e-6,
        );
        const mem = s.memory();
        // N = 1: the paper's 16Ψ; offload adds the host's fp32 master shard and gradient shard to
        // what the device keeps (stage 1: params + grads, stage 2: params, stage 3: nothing).
        const deviceKeeps = offload ? (stage === 1 ? 8 : stage === 2 ? 4 : 0) : 0;
        expect(modelStateBytes(mem), `zero${stage} offload=${offload}`).toBe((16 + deviceKeeps) * psi);
        if (offload) expect(mem.optimizer).toEqual({ device: 0, host: 8 * psi });
        await s.dispose();
      }
    }
    await local.dispose();
  });

  it('names the block groups whose gradients never came, and stays usable', async () => {
    const model = createToyModel(cfg);
    const s = new ShardedStrategy(solo, 2);
    await s.setup(model, model.initParams(1));
    await expect(s.finishStep({ lr: 1e-2, step: 0 })).rejects.toThrow(StrategyError);
    await expect(s.finishStep({ lr: 1e-2, step: 0 })).rejects.toThrow(/no gradients for block group\(s\) "embed"/);
    await trainSteps(model, s, 0, 1, 5);
    await s.dispose();
    expect(() => new ShardedStrategy(solo, 4 as ZeroStage)).toThrow(/stage 4 is invalid, expected 1, 2 or 3/);
  });
});

describe('ZeRO with two ranks in this process (real sockets)', () => {
  let pgs: [ProcessGroup, ProcessGroup];
  beforeAll(async () => {
    const masterPort = await freePort();
    const opts = { worldSize: 2, masterAddr: '127.0.0.1', masterPort, token: 'zero-unit', timeoutMs: 60_000 };
    pgs = (await Promise.all([initProcessGroup({ ...opts, rank: 0 }), initProcessGroup({ ...opts, rank: 1 })])) as [
      ProcessGroup,
      ProcessGroup,
    ];
  });
  afterAll(async () => {
    await Promise.all(pgs.map((pg) => pg.destroy()));
  });

  for (const [stage, offload] of [
    [3, false],
    [1, true],
  ] as Array<[ZeroStage, boolean]>) {
    it(`zero${stage}${offload ? ' offload' : ''}: ranks agree; save+restore resumes exactly; consolidate`, async () => {
      const model = createToyModel(cfg);
      // Different initial values per rank: rank 0's broadcast must win.
      const ranks = pgs.map((pg) => new ShardedStrategy(pg, stage, { offload }));
      await Promise.all(ranks.map((s, r) => s.setup(model, model.initParams(10 + r))));
      await Promise.all(ranks.map((s, r) => trainSteps(model, s, 0, 2, 40 + 1000 * r)));
      const states = await Promise.all(ranks.map((s) => s.saveState()));
      const full = await Promise.all(ranks.map((s) => s.fullParams()));
      expect(full[1]).toEqual(full[0]);
      // Every rank's pieces together hold the whole model, in whatever order they come.
      const specs = uniqueParams(model);
      const merged = await memoryStateSource([states[1], states[0]]).read(
        specs.map((p) => ({ kind: 'param' as const, name: p.name, offset: 0, length: paramCount(p) })),
      );
      expect(new Map(specs.map((p, i) => [p.name, merged[i]]))).toEqual(full[0]);
      // Rank 1's pieces alone lack rank 0's ranges.
      await expect(ranks[0].loadState(memoryStateSource([states[1]]))).rejects.toThrow(/checkpoint holds no /);

      const fresh = pgs.map((pg) => new ShardedStrategy(pg, stage, { offload }));
      await Promise.all(fresh.map((s, r) => s.setup(model, model.initParams(77 + r))));
      await Promise.all(fresh.map((s) => s.loadState(memoryStateSource(states))));
      await Promise.all(ranks.map((s, r) => trainSteps(model, s, 2, 2, 40 + 1000 * r)));
      await Promise.all(fresh.map((s, r) => trainSteps(model, s, 2, 2, 40 + 1000 * r)));
      const cont = await Promise.all(ranks.map((s) => s.fullParams()));
      const resumed = await Promise.all(fresh.map((s) => s.fullParams()));
      expect(resumed[0]).toEqual(cont[0]);
      expect(resumed[1]).toEqual(cont[0]);
      expect(maxRel(cont[0], full[0])).toBeGreaterThan(1e-4); // the continued steps did move them
      await Promise.all([...ranks, ...fresh].map((s) => s.dispose()));
    }, 120_000);
  }
});
