// The matmul table of the GPU benchmark: tfjs's tf.matMul on WebGPU against this project's two
// WGSL programs, the shared-memory tiled one (tiledMatMul, webgpu-kernels/matmul.ts) and the
// barrier-free 4×4 register tile (registerMatMul, matmul-register.ts), on the matmuls of one
// GPT training step. Per preset, with R = B·T rows: the forward of each linear layer
// (qkv [R,C]x[C,3C], attn.proj [R,C]x[C,C], fc [R,C]x[C,4C], mlp.proj [R,4C]x[4C,C], head
// [R,C]x[C,V]) and both of its gradients, dX = dY·Wᵀ and dW = Xᵀ·dY (transposed operands, which
// all implementations read in place). The table records which is fastest per shape; at run
// time matMulAuto (matmul-choice.ts) makes the same choice between tfjs and the register tile.
//
// Timing waits for the GPU's queue to drain (onSubmittedWorkDone) rather than reading a result
// back, so a large output's copy to the host is not counted; `inner` matmuls run back to back
// per sample so that short ones are not measured against one queue round trip. The
// implementations take turns (rotated) within each repetition, and each row also records the largest
// difference between our outputs and tfjs's: a fast wrong kernel shows up here.
import { registerMatMul, tf, tiledMatMul } from '@zeroring/backend';
import { median } from './runs.ts';

export interface MatmulShape {
  model: string;
  /** The layer and pass: 'qkv', 'qkv dX', 'qkv dW', ... */
  name: string;
  pass: 'forward' | 'backward';
  m: number;
  k: number;
  n: number;
  transposeA: boolean;
  transposeB: boolean;
}

export interface Timing {
  ms: number;
  gflops: number;
}

export interface MatmulRow extends MatmulShape {
  gflop: number;
  inner: number;
  tfjs: Timing;
  tiled: Timing;
  register: Timing;
  faster: Impl;
  /** tfjs's time over the tiled program's: above 1 the tiled one is faster. */
  tiledSpeedup: number;
  /** tfjs's time over the register-tile program's: above 1 the register tile is faster. */
  registerSpeedup: number;
  /** max |ours - tfjs| / max |tfjs| over the output, the worse of our two programs. */
  relDiff: number;
}

/** The linear layers of one GPT step for `rows` = B·T windows of width C and vocabulary V. */
export function gptMatmulShapes(model: string, rows: number, c: number, v: number): MatmulShape[] {
  const layers: Array<[string, number, number]> = [
    ['qkv', c, 3 * c],
    ['attn.proj', c, c],
    ['fc', c, 4 * c],
    ['mlp.proj', 4 * c, c],
    ['head', c, v],
  ];
  const shapes: MatmulShape[] = [];
  for (const [name, cin, cout] of layers) {
    const base = { model, pass: 'forward' as const, transposeA: false, transposeB: false };
    shapes.push({ ...base, name, m: rows, k: cin, n: cout });
    // dX [R, Cin] = dY [R, Cout] · Wᵀ (W stored [Cin, Cout]); dW [Cin, Cout] = Xᵀ (X stored [R, Cin]) · dY.
    shapes.push({ ...base, pass: 'backward', name: `${name} dX`, m: rows, k: cout, n: cin, transposeB: true });
    shapes.push({ ...base, pass: 'backward', name: `${name} dW`, m: cin, k: rows, n: cout, transposeA: true });
  }
  return shapes;
}

export const flopsOf = (s: MatmulShape): number => 2 * s.m * s.k * s.n;

/** What tfjs's WebGPUBackend holds of its batch of recorded work (tfjs-backend-webgpu 4.22). */
interface WebGPUQueueOwner {
  commandEncoder: object | null;
  endComputePassEncoder(): void;
  submitQueue(): void;
  device: { queue: { onSubmittedWorkDone(): Promise<void> } };
}

/** Resolves when everything issued so far has run on the GPU. */
async function gpuIdle(): Promise<void> {
  const backend = tf.backend() as unknown as WebGPUQueueOwner;
  // tfjs records dispatches into one encoder and submits in batches: submit what is pending.
  if (backend.commandEncoder) {
    backend.endComputePassEncoder();
    backend.submitQueue();
  }
  await backend.device.queue.onSubmittedWorkDone();
}

export type Impl = 'tfjs' | 'tiled' | 'register';
const IMPLS: Impl[] = ['tfjs', 'tiled', 'register'];
function run(impl: Impl, s: MatmulShape, a: tf.Tensor, b: tf.Tensor): tf.Tensor {
  if (impl === 'tfjs') return tf.matMul(a, b, s.transposeA, s.transposeB);
  if (impl === 'tiled') return tiledMatMul(a, b, s.transposeA, s.transposeB);
  return registerMatMul(a, b, { transposeA: s.transposeA, transposeB: s.transposeB });
}

/** Milliseconds per matmul over `inner` back-to-back matmuls. */
async function sample(impl: Impl, s: MatmulShape, a: tf.Tensor, b: tf.Tensor, inner: number): Promise<number> {
  await gpuIdle();
  const t0 = performance.now();
  const outs: tf.Tensor[] = [];
  for (let i = 0; i < inner; i++) outs.push(run(impl, s, a, b));
  await gpuIdle();
  const ms = (performance.now() - t0) / inner;
  tf.dispose(outs);
  return ms;
}

async function relDiff(impl: Impl, s: MatmulShape, a: tf.Tensor, b: tf.Tensor): Promise<number> {
  const [x, y] = [run(impl, s, a, b), run('tfjs', s, a, b)];
  const [got, want] = [await x.data(), await y.data()];
  tf.dispose([x, y]);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < want.length; i++) {
    diff = Math.max(diff, Math.abs(got[i]! - want[i]!));
    scale = Math.max(scale, Math.abs(want[i]!));
  }
  return diff / Math.max(scale, 1e-30);
}

export interface MeasureOptions {
  reps: number;
  /** Aim for samples of about this long, so short matmuls are not timed against one round trip. */
  sampleMs: number;
}

/** Times both implementations on one shape (the backend must be webgpu). */
export async function measureShape(s: MatmulShape, o: MeasureOptions): Promise<MatmulRow> {
  const a = tf.randomUniform(s.transposeA ? [s.k, s.m] : [s.m, s.k], -1, 1);
  const b = tf.randomUniform(s.transposeB ? [s.n, s.k] : [s.k, s.n], -1, 1);
  try {
    // Warm-up (shader compilation) and the output check in one go.
    const diff = Math.max(await relDiff('tiled', s, a, b), await relDiff('register', s, a, b));
    let first = 0;
    for (const impl of IMPLS) first = Math.max(first, await sample(impl, s, a, b, 1));
    const inner = Math.min(64, Math.max(1, Math.ceil(o.sampleMs / Math.max(first, 1e-3))));
    const ms: Record<Impl, number[]> = { tfjs: [], tiled: [], register: [] };
    for (let r = 0; r < o.reps; r++)
      for (let i = 0; i < IMPLS.length; i++) {
        const impl = IMPLS[(i + r) % IMPLS.length]!;
        ms[impl].push(await sample(impl, s, a, b, inner));
      }
    const flop = flopsOf(s);
    const timing = (xs: number[]): Timing => {
      const m = median(xs);
      return { ms: m, gflops: flop / m / 1e6 };
    };
    const [tfjs, tiled, register] = [timing(ms.tfjs), timing(ms.tiled), timing(ms.register)];
    const timings: Record<Impl, Timing> = { tfjs, tiled, register };
    return {
      ...s,
      gflop: flop / 1e9,
      inner,
      tfjs,
      tiled,
      register,
      faster: IMPLS.reduce((best, impl) => (timings[impl].ms < timings[best].ms ? impl : best)),
      tiledSpeedup: tfjs.ms / tiled.ms,
      registerSpeedup: tfjs.ms / register.ms,
      relDiff: diff,
    };
  } finally {
    tf.dispose([a, b]);
  }
}
