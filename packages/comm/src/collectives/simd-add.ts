// out = x + y on float32 with WebAssembly SIMD (f32x4.add), for the ring's reductions: after the
// transport stopped copying, the reduction loop was the largest CPU cost of a large all-reduce
// that is not socket work. Bit-identical to the JS loop. Receive buffers are carved from the
// module's memory (simdArena), so a received chunk is reduced in place.
// Details: docs/internals.md#simd-add
import { wasm } from '@zeroring/core';

/** Elements per block: two staging blocks of 1 MiB live at the start of the module's memory. */
const BLOCK = 256 * 1024;
/** Receive buffers after the staging blocks (virtual until touched; never grown, so views stay valid). */
const ARENA_BYTES = 32 * 1024 * 1024;

const { I32, Op, Simd, get, i32, set, simd, wasmModule, whileNot } = wasm;

/** add(out, x, y, bytes: i32 byte addresses and length, a multiple of 16): out = x + y, f32x4. */
function moduleBytes(): Uint8Array<ArrayBuffer> {
  const [OUT, X, Y, BYTES, I] = [0, 1, 2, 3, 4];
  const at = (base: number) => [...get(base), ...get(I), Op.I32Add]; // base + i
  const V128_MEMARG = [4, 0]; // align 2^4, offset 0
  const load = [...simd(Simd.V128Load), ...V128_MEMARG];
  const body = [
    ...at(OUT),
    ...at(X),
    ...load,
    ...at(Y),
    ...load,
    ...simd(Simd.F32x4Add),
    ...simd(Simd.V128Store),
    ...V128_MEMARG,
    ...get(I),
    ...i32(16),
    Op.I32Add,
    ...set(I), // i += 16
  ];
  const code = whileNot([...get(I), ...get(BYTES), Op.I32GeU], body);
  return wasmModule([{ name: 'add', params: [I32, I32, I32, I32], locals: [[1, I32]], code }], { shared: false });
}

interface Kernel {
  add: (out: number, x: number, y: number, bytes: number) => void;
  memory: ArrayBuffer;
  a: Float32Array;
  b: Float32Array;
  /** Next free byte of the arena. */
  arenaNext: number;
}

let kernel: Kernel | null | undefined;

function load(): Kernel | null {
  try {
    const memory = new WebAssembly.Memory({ initial: (2 * BLOCK * 4 + ARENA_BYTES) / 65536 });
    const instance = new WebAssembly.Instance(new WebAssembly.Module(moduleBytes()), { env: { memory } });
    return {
      add: instance.exports.add as Kernel['add'],
      memory: memory.buffer,
      a: new Float32Array(memory.buffer, 0, BLOCK),
      b: new Float32Array(memory.buffer, BLOCK * 4, BLOCK),
      arenaNext: 2 * BLOCK * 4,
    };
  } catch {
    return null; // no WebAssembly SIMD here: the caller keeps its loop
  }
}

function getKernel(): Kernel | null {
  if (kernel === undefined) kernel = load();
  return kernel;
}

/**
 * A buffer of `bytes` inside the module's memory, for good (the caller pools it), so that
 * simdAdd reads and writes it without copies; null when the arena is used up or there is no
 * WebAssembly SIMD.
 */
export function simdArena(bytes: number): Uint8Array | null {
  const k = getKernel();
  const size = (bytes + 15) & ~15;
  if (!k || k.arenaNext + size > k.memory.byteLength) return null;
  const view = new Uint8Array(k.memory, k.arenaNext, bytes);
  k.arenaNext += size;
  return view;
}

/** Whether `view` was carved from the arena (its memory is never returned, so keep reusing it). */
export function inSimdArena(view: Uint8Array): boolean {
  return kernel != null && view.buffer === kernel.memory;
}

/**
 * out = x + y over the largest multiple of 4 elements; returns how many it did (0 where
 * WebAssembly SIMD is unavailable). out may alias x or y.
 */
export function simdAdd(out: Float32Array, x: Float32Array, y: Float32Array): number {
  const k = getKernel();
  if (!k) return 0;
  const { add, a, b, memory } = k;
  const n = out.length & ~3;
  // Operands in the module's memory are addressed where they are; the others go through staging.
  const xIn = x.buffer === memory;
  const yIn = y.buffer === memory;
  const outIn = out.buffer === memory;
  for (let i = 0; i < n; i += BLOCK) {
    const m = Math.min(BLOCK, n - i);
    if (!xIn) a.set(x.subarray(i, i + m));
    if (!yIn) b.set(y.subarray(i, i + m));
    add(
      outIn ? out.byteOffset + i * 4 : 0,
      xIn ? x.byteOffset + i * 4 : 0,
      yIn ? y.byteOffset + i * 4 : BLOCK * 4,
      m * 4,
    );
    if (!outIn) out.set(m === BLOCK ? a : a.subarray(0, m), i);
  }
  return n;
}
