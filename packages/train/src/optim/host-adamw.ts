// Fast host AdamW for an offloaded optimizer shard (CPU offload). The shard's params, grads and
// moments live in one WebAssembly memory, handed out as Float32Array views, so nothing is copied in
// or out; the update is host-adamw-wasm.ts's SIMD kernel, split across worker threads over a
// SharedArrayBuffer for large shards. Weight decay is per run of elements (decayRuns), as nanoGPT
// decays only matrices.
// Details: docs/internals.md#host-adamw
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { adamwModuleBytes, WASM_MAX_PAGES, WASM_PAGE_BYTES, type AdamWKernel } from './host-adamw-wasm.ts';
import {
  adamwScalars,
  decayRuns,
  toF32,
  AdamWConfigError,
  type AdamWHyper,
  type AdamWScalars,
  type DecayRun,
} from './host-adamw-loops.ts';

export { adamwStepPlain, adamwStepF32, adamwScalars, decayRuns, AdamWConfigError } from './host-adamw-loops.ts';
export type { AdamWHyper, DecayRun, AdamWScalars } from './host-adamw-loops.ts';

export interface HostAdamWOptions {
  /** Elements in the shard. */
  length: number;
  /** Worker threads including the calling one; 'auto' shares the cores among this host's ranks. */
  threads?: number | 'auto';
  /** Which elements get weight decay: all (true, torch's default), none, [start, end) ranges, or a 0/1 mask. */
  decay?: boolean | ReadonlyArray<readonly [number, number]> | Uint8Array;
}

// Below this many elements per thread the round trip to a worker outweighs the work.
const MIN_ELEMENTS_PER_THREAD = 1 << 19;
// Arrays start on cache-line boundaries so no two threads' slices share a line at the array joins.
const ALIGN_BYTES = 64;

/** Thread count 'auto' picks: cores divided among the ranks of this host, and enough work per thread. */
export function autoThreads(length: number): number {
  const cores = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
  const localRanks = Math.max(1, Number(process.env.LOCAL_WORLD_SIZE ?? 1) || 1);
  const byCores = Math.max(1, Math.floor(cores / localRanks));
  const byWork = Math.max(1, Math.floor(length / MIN_ELEMENTS_PER_THREAD));
  return Math.min(byCores, byWork);
}

/** Max elements one HostAdamW holds: four f32 arrays in a 4 GiB wasm32 memory. */
export const HOST_ADAMW_MAX_LENGTH = Math.floor((WASM_MAX_PAGES * WASM_PAGE_BYTES - 4 * ALIGN_BYTES) / 16);

type Slice = [pByte: number, gByte: number, mByte: number, vByte: number, n: number, decayed: 0 | 1];

export class HostAdamW {
  readonly length: number;
  readonly threads: number;
  /** Views into the kernel's memory; write grads before step(), read params after. */
  readonly params: Float32Array;
  readonly grads: Float32Array;
  readonly m: Float32Array;
  readonly v: Float32Array;

  private readonly kernel: AdamWKernel;
  private readonly base: readonly [number, number, number, number]; // byte offsets of p, g, m, v
  private readonly workers: Worker[];
  private mainSlices: Slice[] = [];
  private allSlices: Slice[] = [];
  private busy = false;
  private nextId = 0;
  private closed = false;

  private constructor(
    length: number,
    memory: WebAssembly.Memory,
    module: WebAssembly.Module,
    base: readonly [number, number, number, number],
    workers: Worker[],
  ) {
    this.length = length;
    this.threads = workers.length + 1;
    this.base = base;
    this.workers = workers;
    const buf = memory.buffer;
    [this.params, this.grads, this.m, this.v] = base.map((b) => new Float32Array(buf, b, length));
    const instance = new WebAssembly.Instance(module, { env: { memory } });
    this.kernel = instance.exports.adamw as AdamWKernel;
  }

  static async create(opts: HostAdamWOptions): Promise<HostAdamW> {
    const { length } = opts;
    if (!Number.isInteger(length) || length < 0 || length > HOST_ADAMW_MAX_LENGTH) {
      throw new AdamWConfigError('length', length, `an integer in [0, ${HOST_ADAMW_MAX_LENGTH}]`);
    }
    const requested = opts.threads ?? 'auto';
    if (requested !== 'auto' && !(Number.isInteger(requested) && requested >= 1)) {
      throw new AdamWConfigError('threads', requested, "an integer >= 1 or 'auto'");
    }
    const threads = requested === 'auto' ? autoThreads(length) : requested;
    const shared = threads > 1;

    const arrayBytes = Math.ceil((length * 4) / ALIGN_BYTES) * ALIGN_BYTES;
    const base = [0, arrayBytes, 2 * arrayBytes, 3 * arrayBytes] as const;
    const pages = Math.max(1, Math.ceil((4 * arrayBytes) / WASM_PAGE_BYTES));
    const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared });
    const module = await WebAssembly.compile(adamwModuleBytes(shared, pages));

    const workers: Worker[] = [];
    try {
      for (let i = 1; i < threads; i++) {
        const w = new Worker(new URL('./host-adamw-worker.mjs', import.meta.url), { workerData: { module, memory } });
        workers.push(w);
      }
      await Promise.all(
        workers.map(
          (w) =>
            new Promise<void>((resolve, reject) => {
              w.once('online', () => resolve());
              w.once('error', reject);
            }),
        ),
      );
      // Idle workers must not keep the process alive (a forgotten close()); step() refs them
      // while they work, or an await on them alone would let the process exit.
      for (const w of workers) w.unref();
    } catch (err) {
      await Promise.all(workers.map((w) => w.terminate()));
      throw err;
    }
    const opt = new HostAdamW(length, memory, module, base, workers);
    opt.setDecay(opts.decay ?? true);
    return opt;
  }

  /** Change which elements decay (e.g. after a partition is known). */
  setDecay(decay: boolean | ReadonlyArray<readonly [number, number]> | Uint8Array): void {
    const runs = decayRuns(this.length, decay);
    // Contiguous equal slices, cut on 16-element boundaries (whole cache lines, whole f32x4s).
    const per = Math.ceil(this.length / this.threads / 16) * 16;
    const sliceRuns: Slice[][] = [];
    for (let t = 0; t < this.threads; t++) {
      const lo = Math.min(this.length, t * per);
      const hi = Math.min(this.length, lo + per);
      sliceRuns.push(this.slicesOf(runs, lo, hi));
    }
    this.mainSlices = sliceRuns[0]!;
    this.allSlices = this.slicesOf(runs, 0, this.length);
    this.workers.forEach((w, i) => w.postMessage({ type: 'runs', runs: sliceRuns[i + 1] }));
  }

  private slicesOf(runs: DecayRun[], lo: number, hi: number): Slice[] {
    const out: Slice[] = [];
    const [p, g, m, v] = this.base;
    for (const r of runs) {
      const s = Math.max(r.start, lo);
      const e = Math.min(r.end, hi);
      if (s < e) out.push([p + 4 * s, g + 4 * s, m + 4 * s, v + 4 * s, e - s, r.decay ? 1 : 0]);
    }
    return out;
  }

  /** One AdamW step (t counts from 1) over the whole shard, using the current `grads`. */
  async step(h: AdamWHyper, t: number): Promise<void> {
    if (this.closed) throw new AdamWConfigError('HostAdamW', 'closed', 'an open optimizer (step after close)');
    if (this.busy) {
      throw new AdamWConfigError('HostAdamW.step', 'called while a step is running', 'one step at a time');
    }
    const s = toF32(adamwScalars(h, t));
    if (this.workers.length === 0) {
      this.runSlices(this.mainSlices, s);
      return;
    }
    this.busy = true;
    for (const w of this.workers) w.ref();
    try {
      const id = this.nextId++;
      const done = this.workers.map(
        (w, i) =>
          new Promise<void>((resolve, reject) => {
            const cleanup = (): void => {
              w.off('message', onMessage);
              w.off('error', onError);
              w.off('exit', onExit);
            };
            const onMessage = (msg: number): void => {
              if (msg !== id) return;
              cleanup();
              resolve();
            };
            const onError = (err: Error): void => {
              cleanup();
              reject(err);
            };
            // A worker that dies mid-step must fail the step, not hang it.
            const onExit = (code: number): void => {
              cleanup();
              reject(new AdamWConfigError(`HostAdamW worker ${i + 1} exit code`, code, 'a live worker during step()'));
            };
            w.on('message', onMessage);
            w.on('error', onError);
            w.on('exit', onExit);
            w.postMessage({ type: 'step', id, scalars: s });
          }),
      );
      this.runSlices(this.mainSlices, s);
      await Promise.all(done);
    } finally {
      for (const w of this.workers) w.unref();
      this.busy = false;
    }
  }

  /** Single-threaded step on the calling thread (ignores the workers). */
  stepSync(h: AdamWHyper, t: number): void {
    if (this.closed) throw new AdamWConfigError('HostAdamW', 'closed', 'an open optimizer (step after close)');
    const s = toF32(adamwScalars(h, t));
    this.runSlices(this.allSlices, s);
  }

  private runSlices(slices: Slice[], s: AdamWScalars): void {
    for (const [p, g, m, v, n, decayed] of slices) {
      const decay = decayed ? s.decay : 1;
      const { beta1, oneMinusBeta1, beta2, oneMinusBeta2, stepSize, bc2Sqrt, eps } = s;
      this.kernel(p, g, m, v, n, decay, beta1, oneMinusBeta1, beta2, oneMinusBeta2, stepSize, bc2Sqrt, eps);
    }
  }

  /** Host bytes held (the four arrays). */
  get bytes(): number {
    return 16 * this.length;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
