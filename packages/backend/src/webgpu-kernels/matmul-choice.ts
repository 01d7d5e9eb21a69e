// Per-shape choice between tfjs's matmul and this package's register-tile programs
// (matmul-register.ts), by measuring both on the device in use. Which is faster depends on the
// adapter (lavapipe on the CPU favours the barrier-free register tiles; a real GPU usually
// tfjs's shared-memory kernel) and on the shape, so no fixed rule is right everywhere.
//
// The first time a shape (M, K, N, transposes, bias) is seen on a backend, matMulAuto runs
// tfjs's matmul and queues the shape; a timer (never the caller's tidy or gradient scope) then
// times every candidate on inputs of that shape and records the fastest; later calls dispatch
// to the winner. All shapes queued by then are timed together in bursts: each run
// is submitted alone and timed by the queue's done-promises (onSubmittedWorkDone), not by
// reading results back, so tuning adds no read-back to a training step, and a burst is
// recorded synchronously so the caller's own GPU work can only queue before or after it. Two
// bursts (compile, then three rounds in rotated orders; each candidate keeps its median) take
// the GPU for two of the caller's steps. Every candidate
// computes the same sums in the same k order up to float rounding, so a switch mid-run does
// not change results beyond that.
//
// ZERORING_WEBGPU_MATMUL=tfjs|own|auto (default auto) forces one implementation: `own` is the
// 4×4 register tile.
import * as tf from '@tensorflow/tfjs-core';
import { activeWebGPU } from './program.ts';
import { REGISTER_TILES, registerMatMul, type RegisterTile } from './matmul-register.ts';

export interface MatMulAutoOptions {
  transposeA?: boolean;
  transposeB?: boolean;
  /** Added to every row of the [M, N] result ([N] values). */
  bias?: tf.Tensor;
  /**
   * tfjs's candidate transposes b into a new tensor and runs a plain matmul instead of using its
   * transposeB flag (on lavapipe tfjs's transposeB shader measured ~2x slower than that).
   */
  tfjsTransposeBFirst?: boolean;
}

export type MatMulMode = 'tfjs' | 'own' | 'auto';

/** One measured shape: each candidate's milliseconds per matmul and the one chosen. */
export interface MatMulChoice extends Omit<Shape, 'tfjsTransposeBFirst'> {
  /** Candidate name -> median sample, ms per matmul. */
  ms: Record<string, number>;
  choice: string;
  /** Why measuring failed, when it did (the choice is then tfjs). */
  error?: string;
}

interface Shape {
  m: number;
  k: number;
  n: number;
  transposeA: boolean;
  transposeB: boolean;
  bias: boolean;
  tfjsTransposeBFirst: boolean;
}

type Impl = (a: tf.Tensor, b: tf.Tensor, bias: tf.Tensor | undefined, s: Shape) => tf.Tensor;

function tfjsMatMul(a: tf.Tensor, b: tf.Tensor, bias: tf.Tensor | undefined, s: Shape): tf.Tensor {
  if (s.tfjsTransposeBFirst && s.transposeB) {
    return tf.tidy(() => tfjsMatMul(a, tf.transpose(b), bias, { ...s, transposeB: false, tfjsTransposeBFirst: false }));
  }
  if (!bias) return tf.matMul(a, b, s.transposeA, s.transposeB);
  const [a2, b2] = [a as tf.Tensor2D, b as tf.Tensor2D];
  return tf.fused.matMul({ a: a2, b: b2, transposeA: s.transposeA, transposeB: s.transposeB, bias });
}

const register =
  (tile: RegisterTile): Impl =>
  (a, b, bias, s) =>
    registerMatMul(a, b, { transposeA: s.transposeA, transposeB: s.transposeB, bias, tile });

/** The candidates, tfjs first (used while a shape is new, and on ties). */
// Only the 4×4 tile: on lavapipe the wider tiles spill registers (a vec4 accumulator per row
// and column group is 4 of the CPU's 16 vector registers), and each candidate costs tuning time.
const CANDIDATES: ReadonlyArray<[string, Impl]> = [
  ['tfjs', tfjsMatMul],
  ...REGISTER_TILES.slice(0, 1).map((t): [string, Impl] => [`register${t.rows}x${t.cols}`, register(t)]),
];
const OWN = CANDIDATES[1]!;

/** Choices per backend instance (a new device measures afresh). */
const tables = new WeakMap<object, Map<string, MatMulChoice>>();
const queued = new Map<string, Shape>();
/** Measurements of a shape that gave no clean timing so far, and how many are tried. */
const attempts = new Map<string, number>();
const MEASURE_ATTEMPTS = 4;
let tuning: Promise<void> | undefined;

function mode(): MatMulMode {
  const v = (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env
    .ZERORING_WEBGPU_MATMUL;
  if (v === undefined || v === '' || v === 'auto') return 'auto';
  if (v === 'tfjs' || v === 'own') return v;
  throw new RangeError(`ZERORING_WEBGPU_MATMUL must be tfjs, own or auto, not ${JSON.stringify(v)}`);
}

const keyOf = (s: Shape): string =>
  `${s.m},${s.k},${s.n},${+s.transposeA},${+s.transposeB},${+s.bias},${+s.tfjsTransposeBFirst}`;

function tableOf(backend: object): Map<string, MatMulChoice> {
  let t = tables.get(backend);
  if (!t) tables.set(backend, (t = new Map()));
  return t;
}

/**
 * op(a) @ op(b) (+ bias) on the webgpu backend with the implementation measured fastest for
 * this shape on this device (see the file header); rank 2, float32. No gradient of its own.
 */
export function matMulAuto(a: tf.Tensor, b: tf.Tensor, options: MatMulAutoOptions = {}): tf.Tensor2D {
  const backend = activeWebGPU();
  if (!backend) throw new Error(`matMulAuto needs the webgpu backend, not ${tf.getBackend()}`);
  const { transposeA = false, transposeB = false, bias, tfjsTransposeBFirst = false } = options;
  const [m, k] = transposeA ? [a.shape[1]!, a.shape[0]!] : [a.shape[0]!, a.shape[1]!];
  const n = transposeB ? b.shape[0]! : b.shape[1]!;
  const s: Shape = { m, k, n, transposeA, transposeB, bias: !!bias, tfjsTransposeBFirst };
  const forced = mode();
  if (forced !== 'auto' || a.rank !== 2 || b.rank !== 2) {
    return (forced === 'own' ? OWN[1] : tfjsMatMul)(a, b, bias, s) as tf.Tensor2D;
  }
  const key = keyOf(s);
  const chosen = tableOf(backend).get(key);
  if (chosen) return CANDIDATES.find(([name]) => name === chosen.choice)![1](a, b, bias, s) as tf.Tensor2D;
  if (!queued.has(key)) {
    queued.set(key, s);
    // A timer, not a microtask: the caller's synchronous tidy and gradient scopes are long gone.
    if (!tuning) tuning = new Promise((resolve) => setTimeout(resolve, 0)).then(() => tuneQueued(backend));
  }
  return tfjsMatMul(a, b, bias, s) as tf.Tensor2D;
}

/** Resolves once every shape seen so far has been measured and has its choice. */
export async function settleMatMulChoices(): Promise<void> {
  while (tuning) await tuning;
}

/** The measured shapes on the active backend, in the order they were measured. */
export function matMulChoices(): MatMulChoice[] {
  const backend = activeWebGPU();
  return backend ? [...tableOf(backend).values()] : [];
}

/** What tfjs's WebGPUBackend holds of its batch of recorded work (tfjs-backend-webgpu 4.22). */
interface WebGPUQueueOwner {
  commandEncoder: object | null;
  endComputePassEncoder(): void;
  submitQueue(): void;
  device: { queue: { onSubmittedWorkDone(): Promise<void> } };
}

/** Resolves when everything issued so far has run on the GPU; reads nothing back. */
export async function webgpuIdle(): Promise<void> {
  const backend = activeWebGPU() as unknown as WebGPUQueueOwner | undefined;
  if (!backend) return;
  // tfjs records dispatches into one encoder and submits in batches: submit what is pending.
  flush(backend);
  await backend.device.queue.onSubmittedWorkDone();
}

/** Inputs in [-1, 1] without tf's random generator (whose state the caller may rely on). */
function operand(shape: number[]): tf.Tensor {
  const data = new Float32Array(shape.reduce((x, y) => x * y, 1));
  for (let i = 0; i < data.length; i++) data[i] = ((i * 7919) % 2003) / 1001.5 - 1;
  return tf.tensor(data, shape);
}

/** Submits what tfjs has recorded but not yet submitted. */
function flush(backend: WebGPUQueueOwner): void {
  if (backend.commandEncoder) {
    backend.endComputePassEncoder();
    backend.submitQueue();
  }
}

/**
 * Runs `items` back to back on the GPU and returns each one's milliseconds. Each item is
 * submitted on its own, followed by a done-promise for the queue; the queue runs in order, so
 * the gap between consecutive promises is one item's run. The burst is recorded synchronously
 * after the caller's pending work: what the caller records meanwhile can only queue behind it.
 */
async function burst(items: Array<() => tf.Tensor[]>): Promise<number[]> {
  const backend = activeWebGPU() as unknown as WebGPUQueueOwner;
  // Whatever the caller recorded goes first; the first promise marks its end.
  flush(backend);
  const queue = backend.device.queue;
  const done = () => queue.onSubmittedWorkDone().then(() => performance.now());
  const stamps = [done()];
  const outs: tf.Tensor[] = [];
  for (const item of items) {
    outs.push(...item());
    flush(backend);
    stamps.push(done());
  }
  const times = await Promise.all(stamps);
  tf.dispose(outs);
  return items.map((_, i) => times[i + 1]! - times[i]!);
}

interface Trial {
  s: Shape;
  a: tf.Tensor;
  b: tf.Tensor;
  bias?: tf.Tensor;
  inner: number;
  samples: Record<string, number[]>;
}

/**
 * Every candidate on every shape of `trials`, in round r's order: round r starts r thirds of
 * the way into the list (and reverses each shape's candidates on odd rounds). A late callback
 * disturbs the items at the start of a burst, while the caller records its next step, so each
 * item is among the first of one round at most.
 */
function jobsOf(trials: Trial[], r: number): Array<readonly [Trial, readonly [string, Impl]]> {
  const all = trials.flatMap((t) => (r % 2 ? [...CANDIDATES].reverse() : CANDIDATES).map((c) => [t, c] as const));
  const shift = Math.floor((all.length * (r % 3)) / 3);
  return [...all.slice(shift), ...all.slice(0, shift)];
}

/** The rounds `rounds` in one burst; adds each item's ms per run to its trial's samples. */
async function rounds(trials: Trial[], which: number[]): Promise<void> {
  const jobs = which.flatMap((r) => jobsOf(trials, r));
  const items = jobs.map(
    ([t, [, impl]]) =>
      () =>
        Array.from({ length: t.inner }, () => impl(t.a, t.b, t.bias, t.s)),
  );
  const times = await burst(items);
  jobs.forEach(([t, [name]], i) => (t.samples[name] ??= []).push(times[i]! / t.inner));
}

const median = (xs: number[]): number => {
  const sorted = [...xs].sort((x, y) => x - y);
  return sorted[sorted.length >> 1]!;
};

/**
 * Measures every candidate on each shape: a burst that compiles the shaders (tfjs's, compiled
 * already by the caller's first use, also sizes the runs: ~2 ms per item, so that a short matmul
 * on a fast GPU is not timed against the queue's round trip), then one burst of three rounds in
 * rotated orders. The median of the three (zeros dropped): a done-promise's callback runs late
 * when the caller keeps the thread busy (recording its own work), which shortens one item's
 * time and lengthens the next one's.
 */
async function measure(shapes: Shape[]): Promise<Array<MatMulChoice | undefined>> {
  const trials: Trial[] = shapes.map((s) => ({
    s,
    a: operand(s.transposeA ? [s.k, s.m] : [s.m, s.k]),
    b: operand(s.transposeB ? [s.n, s.k] : [s.k, s.n]),
    bias: s.bias ? operand([s.n]) : undefined,
    inner: 1,
    samples: {},
  }));
  try {
    await rounds(trials, [0]);
    for (const t of trials) {
      // A zero sample (a late callback, see above) says nothing: one run per item then.
      const tfjsMs = t.samples.tfjs![0]!;
      t.inner = tfjsMs > 1e-3 ? Math.min(16, Math.max(1, Math.ceil(2 / tfjsMs))) : 1;
      t.samples = {};
    }
    await rounds(trials, [0, 1, 2]);
    return trials.map(({ s, samples }) => {
      // A zero is a callback that ran late together with the next one: no sample. Fewer than two
      // samples of a candidate (the thread was busy through most of the burst): no choice yet.
      const valid = Object.entries(samples).map(([name, xs]) => [name, xs.filter((x) => x > 1e-3)] as const);
      if (valid.some(([, xs]) => xs.length < 2)) return undefined;
      const ms = Object.fromEntries(valid.map(([name, xs]) => [name, median(xs)]));
      const choice = Object.entries(ms).reduce((best, cur) => (cur[1] < best[1] ? cur : best))[0];
      const { tfjsTransposeBFirst: _, ...shape } = s;
      return { ...shape, ms, choice };
    });
  } finally {
    tf.dispose(trials.flatMap((t) => [t.a, t.b, ...(t.bias ? [t.bias] : [])]));
  }
}

async function tuneQueued(backend: object): Promise<void> {
  try {
    // Shapes seen while measuring are measured in the next batch.
    while (queued.size > 0 && activeWebGPU() === backend) {
      const batch = [...queued];
      const table = tableOf(backend);
      try {
        const choices = await measure(batch.map(([, s]) => s));
        batch.forEach(([key, s], i) => {
          const choice = choices[i];
          if (choice) return table.set(key, choice);
          // Measured again in the next batch, up to MEASURE_ATTEMPTS times; then tfjs.
          const tries = (attempts.get(key) ?? 0) + 1;
          attempts.set(key, tries);
          if (tries < MEASURE_ATTEMPTS) return;
          const { tfjsTransposeBFirst: _, ...shape } = s;
          table.set(key, { ...shape, ms: {}, choice: 'tfjs', error: `no clean timing in ${tries} attempts` });
        });
      } catch (err) {
        // A candidate that fails here (a shader the adapter rejects) leaves the shapes on tfjs.
        for (const [key, s] of batch) {
          const { tfjsTransposeBFirst: _, ...shape } = s;
          table.set(key, { ...shape, ms: {}, choice: 'tfjs', error: String(err) });
        }
      }
      for (const [key] of batch) if (tableOf(backend).has(key)) queued.delete(key);
    }
  } finally {
    // A backend switched away from (or re-created) mid-queue: its shapes are measured when seen again.
    queued.clear();
    tuning = undefined;
  }
}
