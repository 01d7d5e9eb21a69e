// The layers of ops.ts on webgpu (our WGSL kernels, matMulAuto, transpose flags) against the
// same layers on cpu (the tfjs-ops path, itself checked against autodiff in ops.test.ts): value
// and every input gradient under a random upstream gradient, over awkward sizes, and the
// dispatches each layer records forward and backward. Without a WebGPU adapter these tests skip
// with the reason printed; under CI they fail instead.
import * as tf from '@tensorflow/tfjs-core';
import { gpuWorkBetween, gpuWorkCounts, initBackend, settleMatMulChoices } from '@zeroring/backend';
import { Rng } from '@zeroring/core';
import { describe, expect, it } from 'vitest';
import { createGPT } from '../src/model.ts';
import {
  gelu,
  layerNorm,
  linear,
  matMul,
  matMulTransposed,
  softmaxCrossEntropy,
  tokenPositionEmbedding,
} from '../src/ops.ts';
import { webgpuSkipReason } from '../../../tests/fixtures/webgpu.ts';

const skipReason = await webgpuSkipReason('webgpu ops tests');
const skip = skipReason !== undefined;

const quiet = { info() {}, warn() {}, debug() {} };
const RTOL = 1e-5;
/** atol, as a fraction of the largest reference magnitude: float32 sums in another order. */
const ATOL = 1e-5;

/** An input: float values from a seeded normal, or int32 values as given. */
type Input = { shape: number[]; seed: number; std?: number } | { ints: number[] };

function makeInput(spec: Input): tf.Tensor {
  if ('ints' in spec) return tf.tensor1d(spec.ints, 'int32');
  const rng = new Rng(spec.seed);
  const n = spec.shape.reduce((a, b) => a * b, 1);
  return tf.tensor(
    Float32Array.from({ length: n }, () => rng.normal() * (spec.std ?? 1)),
    spec.shape,
  );
}

/**
 * Value and gradients of `op` for the float inputs (listed in `wrt`) under the upstream
 * gradient dy (a fixed random tensor of the output's shape), on one backend, read back.
 */
async function valueAndGrads(
  backend: 'cpu' | 'webgpu',
  op: (...xs: tf.Tensor[]) => tf.Tensor,
  specs: Input[],
  wrt: number[],
): Promise<Float32Array[]> {
  await initBackend(backend, { logger: quiet });
  const outs = tf.tidy(() => {
    const inputs = specs.map(makeInput);
    const y = op(...inputs);
    const dy = makeInput({ shape: y.shape, seed: 99 });
    const f = (...xs: tf.Tensor[]) => op(...inputs.map((t, i) => (wrt.includes(i) ? xs[wrt.indexOf(i)]! : t)));
    return [
      y,
      ...tf.grads(f)(
        wrt.map((i) => inputs[i]!),
        dy,
      ),
    ];
  });
  const arrays = await Promise.all(outs.map(async (t) => Float32Array.from(await t.data())));
  tf.dispose(outs);
  return arrays;
}

async function expectSameOnWebGPU(op: (...xs: tf.Tensor[]) => tf.Tensor, specs: Input[], wrt: number[]) {
  const ref = await valueAndGrads('cpu', op, specs, wrt);
  const got = await valueAndGrads('webgpu', op, specs, wrt);
  ref.forEach((r, k) => {
    const g = got[k]!;
    expect(g.length).toBe(r.length);
    const atol = ATOL * r.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    let worst = 0;
    for (let i = 0; i < r.length; i++) {
      const diff = Math.abs(g[i]! - r[i]!);
      // An all-zero reference (LayerNorm's dx when C = 1) leaves no tolerance: only equality passes.
      if (diff > 0 || Number.isNaN(diff)) worst = Math.max(worst, diff / (atol + RTOL * Math.abs(r[i]!)));
    }
    expect(worst, `${k === 0 ? 'value' : `gradient ${k - 1}`} off by ${worst}x the tolerance`).toBeLessThanOrEqual(1);
  });
}

/** Dispatches of one forward and backward of `op` on webgpu, inputs uploaded before. */
async function dispatchesOf(op: (...xs: tf.Tensor[]) => tf.Tensor, specs: Input[], wrt: number[]): Promise<number> {
  await initBackend('webgpu', { logger: quiet });
  const inputs = specs.map(makeInput);
  const y0 = tf.tidy(() => op(...inputs));
  const dy = makeInput({ shape: y0.shape, seed: 99 });
  y0.dispose();
  await Promise.all([...inputs, dy].map((t) => t.data()));
  // matMulAuto measures new shapes on a timer: let that finish so its dispatches are not counted.
  await settleMatMulChoices();
  const before = gpuWorkCounts();
  const grads = tf.tidy(() => {
    const f = (...xs: tf.Tensor[]) => op(...inputs.map((t, i) => (wrt.includes(i) ? xs[wrt.indexOf(i)]! : t)));
    return tf.grads(f)(
      wrt.map((i) => inputs[i]!),
      dy,
    );
  });
  await Promise.all(grads.map((t) => t.data()));
  const n = gpuWorkBetween(before, gpuWorkCounts()).dispatches;
  tf.dispose([...inputs, dy, ...grads]);
  return n;
}

type T2 = tf.Tensor2D;

/** Runs f with matMulAuto forced to one implementation (no measurement adding dispatches). */
async function withMatMul<R>(mode: 'tfjs' | 'own', f: () => Promise<R>): Promise<R> {
  const saved = process.env.ZERORING_WEBGPU_MATMUL;
  process.env.ZERORING_WEBGPU_MATMUL = mode;
  try {
    return await f();
  } finally {
    if (saved === undefined) delete process.env.ZERORING_WEBGPU_MATMUL;
    else process.env.ZERORING_WEBGPU_MATMUL = saved;
  }
}
const ids = (n: number, v: number) => ({ ints: Array.from({ length: n }, (_, i) => (i * 31 + 7) % v) });

describe('ops on webgpu match ops on cpu', () => {
  it.skipIf(skip)('a WebGPU adapter is present', () => {
    expect(skipReason).toBeUndefined();
  });

  it.skipIf(skip)('layerNorm over C = 1, 3, 100, 384, 768 with rows not a multiple of 64', async () => {
    const op = (x: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => layerNorm(x as T2, g, b);
    for (const [n, c] of [
      [5, 1],
      [37, 3],
      [300, 100],
      [65, 384],
      [257, 768],
    ] as const) {
      await expectSameOnWebGPU(
        op,
        [
          { shape: [n, c], seed: n + c, std: 3 },
          { shape: [c], seed: 2 },
          { shape: [c], seed: 3 },
        ],
        [0, 1, 2],
      );
    }
  });

  it.skipIf(skip)('linear and gelu(linear) with the bias in the fused matmul', async () => {
    for (const [n, k, m] of [
      [37, 3, 1],
      [300, 100, 384],
      [70, 128, 512],
    ] as const) {
      const specs: Input[] = [
        { shape: [n, k], seed: 1 },
        { shape: [k, m], seed: 2 },
        { shape: [m], seed: 3 },
      ];
      await expectSameOnWebGPU((x, w, b) => linear(x as T2, w!, b!), specs, [0, 1, 2]);
      await expectSameOnWebGPU((x, w, b) => gelu(linear(x as T2, w!, b!)), specs, [0, 1, 2]);
    }
  });

  it.skipIf(skip)('gelu alone, matMul, matMulTransposed', async () => {
    await expectSameOnWebGPU((x) => gelu(x as T2), [{ shape: [300, 384], seed: 4, std: 3 }], [0]);
    await expectSameOnWebGPU(
      (a, b) => matMul(a as T2, b as T2),
      [
        { shape: [37, 100], seed: 5 },
        { shape: [100, 65], seed: 6 },
      ],
      [0, 1],
    );
    await expectSameOnWebGPU(
      (a, b) => matMulTransposed(a as T2, b as T2),
      [
        { shape: [300, 100], seed: 5 },
        { shape: [65, 100], seed: 6 },
      ],
      [0, 1],
    );
  });

  it.skipIf(skip)('tokenPositionEmbedding: rows plus positions, and both gradients', async () => {
    for (const [B, T, V, C] of [
      [1, 1, 65, 1],
      [3, 100, 65, 100],
      [5, 7, 90, 33],
    ] as const) {
      await expectSameOnWebGPU(
        (i, t, p) => tokenPositionEmbedding(tf.reshape(i!, [B, T]), t!, p!),
        [ids(B * T, V), { shape: [V, C], seed: 7 }, { shape: [T, C], seed: 8 }],
        [1, 2],
      );
    }
  });

  it.skipIf(skip)('softmaxCrossEntropy over V = 65 .. 100', async () => {
    for (const [n, v] of [
      [1, 65],
      [37, 77],
      [300, 100],
    ] as const) {
      await expectSameOnWebGPU(
        (l, t) => softmaxCrossEntropy(l as T2, t as tf.Tensor1D),
        [{ shape: [n, v], seed: n + v, std: 4 }, ids(n, v)],
        [0],
      );
    }
  });

  it.skipIf(skip)('a two-layer GPT: loss and every parameter gradient', async () => {
    const model = createGPT({ vocabSize: 67, blockSize: 16, nLayer: 2, nHead: 2, nEmbd: 36 });
    const init = model.initParams(5);
    const names = [...init.keys()];
    const shapes = new Map(model.blocks.flatMap((b) => b.params.map((p) => [p.name, p.shape] as const)));
    const [B, T] = [3, 16];
    const tokens = Array.from({ length: B * T }, (_, i) => (i * 13 + 5) % 67);
    const run = async (backend: 'cpu' | 'webgpu') => {
      await initBackend(backend, { logger: quiet });
      const outs = tf.tidy(() => {
        const ids = tf.tensor2d(tokens, [B, T], 'int32');
        const targets = tf.tensor2d(
          tokens.map((t) => (t + 1) % 67),
          [B, T],
          'int32',
        );
        const params = names.map((n) => tf.tensor(init.get(n)!, shapes.get(n)!));
        const loss = (...ps: tf.Tensor[]) => {
          const p = Object.fromEntries(names.map((n, i) => [n, ps[i]!]));
          let x: tf.Tensor = ids;
          for (const block of model.blocks) x = block.forward(p, x);
          return model.loss(x, targets);
        };
        const { value, grads } = tf.valueAndGrads(loss)(params);
        return [value, ...grads];
      });
      const arrays = await Promise.all(outs.map(async (t) => Float32Array.from(await t.data())));
      tf.dispose(outs);
      return arrays;
    };
    const ref = await run('cpu');
    // Each matmul of the model by tfjs, then by our register-tile program.
    for (const mode of ['tfjs', 'own'] as const) {
      const got = await withMatMul(mode, () => run('webgpu'));
      ref.forEach((r, k) => {
        // Through two layers float32 rounding compounds: 1e-4 of each tensor's largest entry.
        const scale = r.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
        const worst = r.reduce((m, v, i) => Math.max(m, Math.abs(got[k]![i]! - v)), 0);
        expect(worst / scale, `${mode}: ${k === 0 ? 'loss' : names[k - 1]}`).toBeLessThan(1e-4);
      });
    }
  });

  it.skipIf(skip)('dispatches per layer, forward and backward', async () => {
    const x = { shape: [300, 128], seed: 1 };
    const vec = { shape: [128], seed: 2 };
    const w = { shape: [128, 512], seed: 3 };
    const b = { shape: [512], seed: 4 };
    // forward 1; backward input grad, gain grad, shift's column sum.
    expect(await dispatchesOf((x, g, b) => layerNorm(x as T2, g!, b!), [x, vec, vec], [0, 1, 2])).toBe(4);
    const linearOf = (x: tf.Tensor, w?: tf.Tensor, b?: tf.Tensor) => linear(x as T2, w!, b!);
    // forward: fused matmul with bias; backward: w's transpose, two matmuls and a column sum.
    expect(await withMatMul('tfjs', () => dispatchesOf(linearOf, [x, w, b], [0, 1, 2]))).toBe(5);
    // Our register-tile matmul reads w transposed in place: no transpose dispatch.
    expect(await withMatMul('own', () => dispatchesOf(linearOf, [x, w, b], [0, 1, 2]))).toBe(4);
    expect(await dispatchesOf((x) => gelu(x as T2), [{ shape: [300, 512], seed: 5 }], [0])).toBe(2);
    // The tied head x @ wte^T: the transposes are the matmuls' flags, not dispatches.
    const wte = { shape: [65, 128], seed: 7 };
    const headOf = (a: tf.Tensor, b?: tf.Tensor) => matMulTransposed(a as T2, b as T2);
    for (const mode of ['tfjs', 'own'] as const)
      expect(await withMatMul(mode, () => dispatchesOf(headOf, [x, wte], [0, 1])), mode).toBe(3);
    // forward: gather plus positions; backward: the table's scatter-add, the positions' column sum.
    const table = { shape: [65, 128], seed: 8 };
    const pos = { shape: [100, 128], seed: 9 };
    const emb = (i: tf.Tensor, t: tf.Tensor, p: tf.Tensor) => tokenPositionEmbedding(tf.reshape(i, [3, 100]), t, p);
    expect(await dispatchesOf((i, t, p) => emb(i!, t!, p!), [ids(300, 65), table, pos], [1, 2])).toBe(3);
    // forward: per-row results, mean; backward: one.
    const logits = { shape: [300, 65], seed: 6 };
    expect(
      await dispatchesOf((l, t) => softmaxCrossEntropy(l as T2, t as tf.Tensor1D), [logits, ids(300, 65)], [0]),
    ).toBe(3);
  });
});
