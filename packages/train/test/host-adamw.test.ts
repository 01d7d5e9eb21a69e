import { afterEach, describe, expect, it } from 'vitest';
import {
  HostAdamW,
  adamwStepF32,
  adamwStepPlain,
  decayRuns,
  AdamWConfigError,
  type AdamWHyper,
} from '../src/optim/host-adamw.ts';
import { adamwModuleBytes } from '../src/optim/host-adamw-wasm.ts';
import { FlatPartition } from '../src/partition.ts';
// Deterministic pseudo-random numbers so a failure reproduces.
import { mulberry32 as rng } from '@zeroring/core';

/** Textbook AdamW in float64 state: p -= lr*wd*p; m, v; p -= lr * m̂ / (sqrt(v̂) + eps). */
function adamwF64(
  p: Float64Array,
  g: Float32Array,
  m: Float64Array,
  v: Float64Array,
  h: Required<AdamWHyper>,
  t: number,
  mask: Uint8Array,
): void {
  const bc1 = 1 - h.beta1 ** t;
  const bc2 = 1 - h.beta2 ** t;
  for (let i = 0; i < p.length; i++) {
    if (mask[i]) p[i]! -= h.lr * h.weightDecay * p[i]!;
    m[i] = h.beta1 * m[i]! + (1 - h.beta1) * g[i]!;
    v[i] = h.beta2 * v[i]! + (1 - h.beta2) * g[i]! * g[i]!;
    p[i]! -= (h.lr * (m[i]! / bc1)) / (Math.sqrt(v[i]! / bc2) + h.eps);
  }
}

const hyper: Required<AdamWHyper> = { lr: 3e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };
const opened: HostAdamW[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((o) => o.close()));
});

async function make(length: number, threads: number, decay: Uint8Array, seed: number): Promise<HostAdamW> {
  const o = await HostAdamW.create({ length, threads, decay });
  opened.push(o);
  const r = rng(seed);
  for (let i = 0; i < length; i++) o.params[i] = (r() < 0.5 ? -1 : 1) * (0.01 + r());
  return o;
}

function fillGrads(dst: Float32Array, seed: number): void {
  const r = rng(seed);
  // Mixed magnitudes, exact zeros included, so sqrt(v) and eps both matter somewhere.
  for (let i = 0; i < dst.length; i++) dst[i] = r() < 0.05 ? 0 : (r() - 0.5) * 10 ** (-4 + 4 * r());
}

function randomMask(length: number, seed: number): Uint8Array {
  const r = rng(seed);
  const mask = new Uint8Array(length);
  // Runs rather than per-element noise, like matrices and vectors in a shard.
  for (let i = 0; i < length;) {
    const run = 1 + Math.floor(r() * 9);
    mask.fill(r() < 0.6 ? 1 : 0, i, i + run);
    i += run;
  }
  return mask;
}

describe('host AdamW (WASM SIMD)', () => {
  it('emits a valid module, shared and not', () => {
    expect(WebAssembly.validate(adamwModuleBytes(false, 1))).toBe(true);
    expect(WebAssembly.validate(adamwModuleBytes(true, 3))).toBe(true);
  });

  // Lengths hit empty, tails of 1..3 after f32x4, and slices that leave some threads idle.
  for (const length of [0, 1, 3, 4, 5, 17, 63, 1031, 20011]) {
    for (const threads of [1, 3]) {
      it(`length ${length}, ${threads} thread(s): bit-identical to the f32 loop; 1e-6 of f64, plain`, async () => {
        const mask = randomMask(length, length + 7);
        const o = await make(length, threads, mask, length);
        const runs = decayRuns(length, mask);
        const f32 = { p: o.params.slice(), m: new Float32Array(length), v: new Float32Array(length) };
        for (let t = 1; t <= 6; t++) {
          fillGrads(o.grads, 100 * length + t);
          // Float64 and plain-loop steps start from the kernel's current state, so each step's
          // rounding is measured alone rather than six steps' worth compounded.
          const f64 = { p: Float64Array.from(o.params), m: Float64Array.from(o.m), v: Float64Array.from(o.v) };
          const plain = { p: o.params.slice(), m: o.m.slice(), v: o.v.slice() };
          // Magnitudes of the terms each result sums, the scale its rounding is relative to.
          const mag = { p: new Float64Array(length), m: new Float64Array(length) };
          for (let i = 0; i < length; i++) {
            mag.m[i] = Math.abs(hyper.beta1 * f64.m[i]!) + Math.abs((1 - hyper.beta1) * o.grads[i]!);
          }
          const pBefore = Float64Array.from(o.params);
          await o.step(hyper, t);
          adamwStepF32(f32.p, o.grads, f32.m, f32.v, hyper, t, runs);
          adamwStepPlain(plain.p, o.grads, plain.m, plain.v, hyper, t, runs);
          adamwF64(f64.p, o.grads, f64.m, f64.v, hyper, t, mask);
          for (let i = 0; i < length; i++) mag.p[i] = Math.abs(pBefore[i]!) + Math.abs(f64.p[i]! - pBefore[i]!);
          // Bit level: same f32 operations in the same order, over every step so far.
          expect(new Uint32Array(o.params.slice().buffer)).toEqual(new Uint32Array(f32.p.buffer));
          expect(new Uint32Array(o.m.slice().buffer)).toEqual(new Uint32Array(f32.m.buffer));
          expect(new Uint32Array(o.v.slice().buffer)).toEqual(new Uint32Array(f32.v.buffer));
          const rel = (a: ArrayLike<number>, b: ArrayLike<number>, scale?: ArrayLike<number>): number => {
            let worst = 0;
            for (let i = 0; i < a.length; i++) {
              const d = Math.abs(a[i]! - b[i]!);
              if (d > 0) worst = Math.max(worst, d / Math.max(Math.abs(b[i]!), scale ? scale[i]! : 0));
            }
            return worst;
          };
          expect(rel(o.params, f64.p, mag.p)).toBeLessThan(1e-6);
          expect(rel(o.m, f64.m, mag.m)).toBeLessThan(1e-6);
          expect(rel(o.v, f64.v)).toBeLessThan(1e-6); // a sum of non-negative terms: plain relative
          expect(rel(o.params, plain.p, mag.p)).toBeLessThan(1e-6);
          expect(rel(o.v, plain.v)).toBeLessThan(1e-6);
        }
        // Decay really is selective: undecayed elements match a step with weightDecay 0 exactly.
        if (length > 0) {
          const ref = { p: o.params.slice(), m: o.m.slice(), v: o.v.slice() };
          adamwStepF32(ref.p, o.grads, ref.m, ref.v, { ...hyper, weightDecay: 0 }, 7);
          await o.step(hyper, 7);
          for (let i = 0; i < length; i++) if (!mask[i]) expect(o.params[i]).toBe(ref.p[i]);
          const decayedDiffer = [...mask.keys()].some((i) => mask[i] && o.params[i] !== ref.p[i]);
          expect(decayedDiffer || mask.every((x) => x === 0)).toBe(true);
        }
      });
    }
  }

  it('threaded step, stepSync and a single-thread optimizer give the same bits', async () => {
    const length = 4099;
    const mask = randomMask(length, 5);
    const a = await make(length, 4, mask, 9);
    const b = await make(length, 1, mask, 9);
    for (let t = 1; t <= 3; t++) {
      fillGrads(a.grads, t);
      b.grads.set(a.grads);
      if (t === 2) a.stepSync(hyper, t);
      else await a.step(hyper, t);
      await b.step(hyper, t);
    }
    expect(a.threads).toBe(4);
    expect(new Uint32Array(a.params.slice().buffer)).toEqual(new Uint32Array(b.params.slice().buffer));
    expect(new Uint32Array(a.v.slice().buffer)).toEqual(new Uint32Array(b.v.slice().buffer));
  });

  it('sharded steps over a partition (decay on matrices) equal the unsharded step, bit for bit', async () => {
    const specs = [
      { name: 'wte', shape: [11, 7] },
      { name: 'ln.g', shape: [7] },
      { name: 'fc.w', shape: [7, 13] },
      { name: 'fc.b', shape: [13] },
    ];
    const N = 3;
    const part = FlatPartition.fromParams(specs, N);
    const r = rng(42);
    const values = new Map(
      specs.map((s) => [s.name, Float32Array.from({ length: s.shape.reduce((a, b) => a * b, 1) }, () => r() - 0.5)]),
    );
    const grads = new Map(
      specs.map((s) => [
        s.name,
        Float32Array.from({ length: s.shape.reduce((a, b) => a * b, 1) }, () => (r() - 0.5) * 1e-2),
      ]),
    );
    // Unsharded reference: each parameter on its own, decayed iff it is a matrix.
    const ref = new Map(
      [...values].map(([k, v]) => [k, { p: v.slice(), m: new Float32Array(v.length), v: new Float32Array(v.length) }]),
    );
    const shards = await Promise.all(
      Array.from({ length: N }, async (_, rank) => {
        const o = await HostAdamW.create({ length: part.shardLength, threads: 1, decay: part.decayRanges(rank) });
        opened.push(o);
        part.shardFromValues(values, rank, o.params);
        return o;
      }),
    );
    for (let t = 1; t <= 3; t++) {
      for (const [rank, o] of shards.entries()) {
        part.shardFromValues(grads, rank, o.grads);
        await o.step(hyper, t);
      }
      for (const s of specs) {
        const st = ref.get(s.name)!;
        adamwStepF32(st.p, grads.get(s.name)!, st.m, st.v, hyper, t, decayRuns(st.p.length, s.shape.length >= 2));
      }
    }
    const full = part.unflatten(part.unshard(shards.map((o) => o.params.slice())));
    for (const s of specs)
      expect(new Uint32Array(full.get(s.name)!.slice().buffer)).toEqual(new Uint32Array(ref.get(s.name)!.p.buffer));
  });

  it('setDecay accepts ranges equivalent to a mask, and true/false', async () => {
    expect(
      decayRuns(10, [
        [2, 5],
        [4, 7],
      ]),
    ).toEqual(decayRuns(10, Uint8Array.from([0, 0, 1, 1, 1, 1, 1, 0, 0, 0])));
    expect(decayRuns(4, false)).toEqual([{ start: 0, end: 4, decay: false }]);
    expect(decayRuns(0, true)).toEqual([]);
    const o = await make(6, 2, new Uint8Array(6), 1);
    const p0 = o.params.slice();
    o.setDecay(true);
    o.grads.fill(0);
    await o.step({ lr: 0.5, weightDecay: 1 }, 1);
    // g = 0 so only decay moves p: p * (1 - 0.5), exact in f32.
    expect(o.params).toEqual(p0.map((x) => x * 0.5));
  });

  it('rejects bad input with typed errors naming the value', async () => {
    await expect(HostAdamW.create({ length: -1 })).rejects.toThrow(/length = -1/);
    await expect(HostAdamW.create({ length: 4, threads: 0 })).rejects.toThrow(AdamWConfigError);
    const o = await make(8, 1, new Uint8Array(8), 2);
    await expect(o.step(hyper, 0)).rejects.toThrow(/step = 0, expected an integer >= 1/);
    await expect(o.step({ ...hyper, beta2: 1 }, 1)).rejects.toThrow(/beta2 = 1/);
    await expect(o.step({ ...hyper, lr: Number.NaN }, 1)).rejects.toThrow(/lr = NaN/);
    expect(() => o.setDecay(new Uint8Array(3))).toThrow(/decay mask length = 3, expected 8/);
    expect(() => o.setDecay([[0, 9]])).toThrow(/decay range = \[0, 9\)/);
    await o.close();
    await expect(o.step(hyper, 1)).rejects.toThrow(/closed/);
  });
});
