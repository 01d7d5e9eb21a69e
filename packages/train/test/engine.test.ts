// The blockwise engine against whole-model autodiff (tf.variableGrads), against central finite
// differences, and for tensor leaks across steps; each with the forward's tape kept (the default)
// and with activation checkpointing (recompute, as ZeRO-3 asks).
import { describe, expect, it, beforeAll } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { initNamedBackend, registerAllGradients, type BackendName } from '@zeroring/backend';
import { BlockwiseEngine, acquireSchedule, type GradSink, type ParamSource, type Phase } from '../src/engine.ts';
import { uniqueParams, type BlockModel, type NamedTensors } from '../src/model.ts';
import { createToyModel, toyBatch, rand } from './toy-model.ts';

/** Resident parameters that also records the acquire/release order. */
class TensorSource implements ParamSource {
  log: string[] = [];
  constructor(
    private model: BlockModel,
    public tensors: Map<string, tf.Tensor>,
    readonly recomputeActivations = false,
  ) {}
  acquire(block: number, phase: Phase): NamedTensors {
    this.log.push(`acquire ${block} ${phase}`);
    const out: NamedTensors = {};
    for (const p of this.model.blocks[block].params) out[p.name] = this.tensors.get(p.name)!;
    return out;
  }
  release(block: number, phase: Phase): void {
    this.log.push(`release ${block} ${phase}`);
  }
}

class CollectSink implements GradSink {
  grads = new Map<string, Float32Array>();
  order: Array<{ block: number; names: string[] }> = [];
  async onBlockGrads(block: number, grads: NamedTensors): Promise<void> {
    this.order.push({ block, names: Object.keys(grads) });
    for (const [n, g] of Object.entries(grads)) {
      if (this.grads.has(n)) throw new Error(`gradient for ${n} emitted twice`);
      this.grads.set(n, (await g.data()) as Float32Array);
      g.dispose();
    }
  }
}

function toTensors(values: Map<string, Float32Array>, model: BlockModel): Map<string, tf.Tensor> {
  const out = new Map<string, tf.Tensor>();
  for (const s of uniqueParams(model)) out.set(s.name, tf.tensor(values.get(s.name)!, s.shape));
  return out;
}

function wholeModelLoss(
  model: BlockModel,
  params: Map<string, tf.Tensor>,
  input: tf.Tensor,
  targets: tf.Tensor,
): tf.Scalar {
  let x = input;
  for (const b of model.blocks) {
    const named: NamedTensors = {};
    for (const p of b.params) named[p.name] = params.get(p.name)!;
    x = b.forward(named, x);
  }
  return model.loss(x, targets);
}

function relErr(a: Float32Array, b: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-30);
}

// Every backend that starts on this machine; the rest are reported as skipped with the reason.
await registerAllGradients();
const present: BackendName[] = [];
const missing: Array<[BackendName, string]> = [];
for (const name of ['cpu', 'wasm', 'webgpu'] as const) {
  try {
    await initNamedBackend(name, 'engine test');
    present.push(name);
  } catch (err) {
    missing.push([name, (err as Error).message.split('\n')[0]]);
  }
}

describe.skipIf(missing.length === 0).each(missing)(
  'BlockwiseEngine on %s (skipped: backend unavailable)',
  (_name, reason) => {
    it(`unavailable: ${reason}`, () => {});
  },
);

const modes = present.flatMap((b) => [[b, false] as const, [b, true] as const]);
describe.each(modes)('BlockwiseEngine on %s, recompute %s', (backend, recompute) => {
  beforeAll(async () => {
    await tf.setBackend(backend);
    await tf.ready();
  });

  it('matches tf.variableGrads of the whole model (rel. error < 1e-5), tied wte emitted once at block 0', async () => {
    const model = createToyModel({ vocab: 11, seqLen: 8, dim: 16, layers: 2 });
    const init = model.initParams(1);
    const { input, targets } = toyBatch(2, 3, 8, 11);

    const source = new TensorSource(model, toTensors(init, model), recompute);
    const sink = new CollectSink();
    const engine = new BlockwiseEngine(model);
    const loss = await engine.forwardBackward(input, targets, source, sink);

    const vars = new Map<string, tf.Variable>();
    for (const s of uniqueParams(model))
      vars.set(s.name, tf.variable(tf.tensor(init.get(s.name)!, s.shape), true, `ref_${backend}_${s.name}`));
    const ref = tf.variableGrads(
      () => wholeModelLoss(model, vars as Map<string, tf.Tensor>, input, targets),
      [...vars.values()],
    );
    const refLoss = (await ref.value.data())[0];
    expect(Math.abs(loss - refLoss)).toBeLessThan(1e-5 * Math.abs(refLoss));

    expect([...sink.grads.keys()].sort()).toEqual(
      uniqueParams(model)
        .map((s) => s.name)
        .sort(),
    );
    for (const s of uniqueParams(model)) {
      const g = (await ref.grads[vars.get(s.name)!.name].data()) as Float32Array;
      expect(relErr(sink.grads.get(s.name)!, g), s.name).toBeLessThan(1e-5);
    }
    // Reverse block order; wte (tied) arrives with block 0, the head emits only its own LN params.
    expect(sink.order.map((o) => o.block)).toEqual([3, 2, 1, 0]);
    expect(sink.order[0].names.sort()).toEqual(['lnf.b', 'lnf.g']);
    expect(sink.order[3].names.sort()).toEqual(['wpe', 'wte']);
    // Acquire order is the documented schedule, every acquire released.
    const acquires = source.log.filter((l) => l.startsWith('acquire')).map((l) => l.split(' ').slice(1).join(' '));
    expect(acquires).toEqual(acquireSchedule(4).map((s) => `${s.block} ${s.phase}`));
    expect(source.log.filter((l) => l.startsWith('release')).length).toBe(acquires.length);

    tf.dispose([input, targets, ref.value, ...Object.values(ref.grads), ...source.tensors.values()]);
    for (const v of vars.values()) v.dispose();
  });

  it('agrees with central finite differences along random directions', async () => {
    const model = createToyModel({ vocab: 5, seqLen: 4, dim: 8, layers: 1 });
    const init = model.initParams(3);
    const specs = uniqueParams(model);
    const { input, targets } = toyBatch(4, 2, 4, 5);
    const sink = new CollectSink();
    const engine = new BlockwiseEngine(model);
    const base = toTensors(init, model);
    await engine.forwardBackward(input, targets, new TensorSource(model, base, recompute), sink);
    tf.dispose([...base.values()]);

    const lossAt = async (shift: Map<string, Float32Array>, eps: number): Promise<number> => {
      const moved = new Map<string, Float32Array>();
      for (const s of specs)
        moved.set(
          s.name,
          init.get(s.name)!.map((v, i) => v + eps * shift.get(s.name)![i]),
        );
      const t = toTensors(moved, model);
      const l = await engine.evalLoss(input, targets, new TensorSource(model, t, recompute));
      tf.dispose([...t.values()]);
      return l;
    };
    const r = rand(9);
    for (let trial = 0; trial < 4; trial++) {
      const dir = new Map<string, Float32Array>();
      let directional = 0;
      for (const s of specs) {
        const d = init.get(s.name)!.map(() => r() * 2 - 1);
        dir.set(s.name, d);
        const g = sink.grads.get(s.name)!;
        for (let i = 0; i < d.length; i++) directional += g[i] * d[i];
      }
      // float64 is not available: eps balances float32 rounding of the loss (~1e-7 relative,
      // ~1e-4 in the quotient) against O(eps^2) truncation (measured ~3e-4 here; a wrong or
      // missing gradient term is off by 1e-1 or more).
      const eps = 1e-3;
      const fd = ((await lossAt(dir, eps)) - (await lossAt(dir, -eps))) / (2 * eps);
      expect(Math.abs(fd - directional), `trial ${trial}: fd ${fd} vs analytic ${directional}`).toBeLessThan(
        2e-3 * Math.max(1, Math.abs(directional)),
      );
    }
    tf.dispose([input, targets]);
  });

  it('scales every gradient by gradScale and still reports the unscaled loss', async () => {
    const model = createToyModel({ vocab: 11, seqLen: 8, dim: 16, layers: 1 });
    const tensors = toTensors(model.initParams(8), model);
    const { input, targets } = toyBatch(9, 2, 8, 11);
    const engine = new BlockwiseEngine(model);
    const plain = new CollectSink();
    const scaled = new CollectSink();
    const l1 = await engine.forwardBackward(input, targets, new TensorSource(model, tensors, recompute), plain);
    const l2 = await engine.forwardBackward(input, targets, new TensorSource(model, tensors, recompute), scaled, {
      gradScale: 0.25,
    });
    expect(Math.abs(l2 - l1)).toBeLessThan(1e-6 * l1);
    for (const [n, g] of plain.grads)
      expect(
        relErr(
          scaled.grads.get(n)!,
          g.map((v) => v * 0.25),
        ),
        n,
      ).toBeLessThan(1e-6);
    tf.dispose([input, targets, ...tensors.values()]);
  });

  it('does not grow tensor memory across steps', async () => {
    const model = createToyModel({ vocab: 11, seqLen: 8, dim: 16, layers: 2 });
    const tensors = toTensors(model.initParams(5), model);
    const source = new TensorSource(model, tensors, recompute);
    const engine = new BlockwiseEngine(model);
    const sink: GradSink = { onBlockGrads: (_b, g) => tf.dispose(Object.values(g)) };
    const counts: number[] = [];
    for (let step = 0; step < 5; step++) {
      const { input, targets } = toyBatch(100 + step, 2, 8, 11);
      await engine.forwardBackward(input, targets, source, sink);
      await engine.evalLoss(input, targets, source);
      tf.dispose([input, targets]);
      counts.push(tf.memory().numTensors);
    }
    expect(new Set(counts).size, `numTensors per step: ${counts}`).toBe(1);
    tf.dispose([...tensors.values()]);
  });

  it('runs each block forward once with the tape kept, and again in backward when recomputing', async () => {
    const model = createToyModel({ vocab: 11, seqLen: 8, dim: 16, layers: 2 });
    const calls = model.blocks.map(() => 0);
    const counted: BlockModel = {
      ...model,
      blocks: model.blocks.map((b, i) => ({
        ...b,
        forward: (p: NamedTensors, x: tf.Tensor) => (calls[i]++, b.forward(p, x)),
      })),
    };
    const tensors = toTensors(model.initParams(2), model);
    const { input, targets } = toyBatch(3, 2, 8, 11);
    const engine = new BlockwiseEngine(counted);
    await engine.forwardBackward(input, targets, new TensorSource(counted, tensors, recompute), {
      onBlockGrads: (_b, g) => tf.dispose(Object.values(g)),
    });
    // The last block runs once either way: its forward is fused with the loss.
    expect(calls).toEqual(recompute ? [2, 2, 2, 1] : [1, 1, 1, 1]);
    // What forward kept for backward: block inputs only when recomputing, the tapes' saved tensors otherwise.
    const blockOutputs = 3 * 2 * 8 * 16 * 4; // three [2, 8, 16] float32 block inputs
    if (recompute) expect(engine.lastActivationBytes).toBe(blockOutputs);
    else expect(engine.lastActivationBytes).toBeGreaterThan(blockOutputs);
    tf.dispose([input, targets, ...tensors.values()]);
  });

  it('frees what forward kept when the sink fails mid-backward', async () => {
    const model = createToyModel({ vocab: 11, seqLen: 8, dim: 16, layers: 2 });
    const tensors = toTensors(model.initParams(4), model);
    const { input, targets } = toyBatch(6, 2, 8, 11);
    const engine = new BlockwiseEngine(model);
    const before = tf.memory().numTensors;
    const failing: GradSink = {
      onBlockGrads: (block, g) => {
        tf.dispose(Object.values(g));
        if (block === 2) throw new Error('sink failed');
      },
    };
    await expect(
      engine.forwardBackward(input, targets, new TensorSource(model, tensors, recompute), failing),
    ).rejects.toThrow('sink failed');
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([input, targets, ...tensors.values()]);
  });
});
