// The host AdamW kernel as a WebAssembly SIMD module, emitted byte by byte.
//
// Why hand-emitted bytes: the repository has no build step (everything runs through tsx) and the
// kernel is one small function, so a ~150-line encoder is cheaper than a toolchain dependency
// (wabt, binaryen) and keeps the exact instruction sequence visible here, next to the math it
// implements. The module imports its memory ("env", "memory"), so the same compiled module can be
// instantiated in several worker threads over one shared memory.
//
// Exported function:
//   adamw(p, g, m, v: i32 byte addresses, n: i32 elements,
//         decay, beta1, oneMinusBeta1, beta2, oneMinusBeta2, stepSize, bc2Sqrt, eps: f32)
// per element, all in f32 (the order of operations is torch 1.13's _single_tensor_adamw, and
// host-adamw.ts's adamwStepF32 emulates it exactly, bit for bit):
//   p = p * decay                                  decay = 1 - lr*wd (or 1 where not decayed)
//   m = m * beta1 + g * (1 - beta1)                exp_avg.mul_(b1).add_(g, alpha=1-b1)
//   v = v * beta2 + ((1 - beta2) * g) * g          exp_avg_sq.mul_(b2).addcmul_(g, g, value=1-b2)
//   p = p - (stepSize * m) / (sqrt(v) / bc2Sqrt + eps)   p.addcdiv_(m, denom, value=-step_size)
// Four lanes at a time with f32x4, then a scalar tail for n mod 4 (same IEEE ops, same bits).

const enum Op {
  Block = 0x02, Loop = 0x03, Br = 0x0c, BrIf = 0x0d, End = 0x0b,
  LocalGet = 0x20, LocalSet = 0x21, LocalTee = 0x22,
  F32Load = 0x2a, F32Store = 0x38, I32Const = 0x41,
  I32GeU = 0x4f, I32Add = 0x6a, I32And = 0x71, I32Shl = 0x74,
  F32Sqrt = 0x91, F32Add = 0x92, F32Sub = 0x93, F32Mul = 0x94, F32Div = 0x95,
  SimdPrefix = 0xfd,
}
// SIMD opcodes follow the 0xfd prefix as unsigned LEB128.
const enum Simd { V128Load = 0x00, V128Store = 0x0b, F32x4Splat = 0x13, Sqrt = 0xe3, Add = 0xe4, Sub = 0xe5, Mul = 0xe6, Div = 0xe7 }
const I32 = 0x7f, F32 = 0x7d, V128 = 0x7b, VOID_BLOCK = 0x40;

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    const done = (n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0);
    out.push(done ? byte : byte | 0x80);
    if (done) return out;
  }
}

const str = (s: string): number[] => [...uleb(s.length), ...Buffer.from(s, 'latin1')];
const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body];

// Locals: 0..4 i32 pointers/count, 5..12 f32 scalars (the parameters), then our own.
const P = 0, G = 1, M = 2, V = 3, N = 4;
const DECAY = 5, B1 = 6, OMB1 = 7, B2 = 8, OMB2 = 9, STEP = 10, BC2 = 11, EPS = 12;
const I = 13, END4 = 14, ENDALL = 15; // i32: byte offset, end of the SIMD part, end of all
const SPLAT0 = 16; // v128 splats of DECAY..EPS, in the same order (SPLAT0 + (k - DECAY))
const GV = 24, MV = 25, VV = 26; // v128 scratch
const GS = 27, MS = 28, VS = 29; // f32 scratch for the tail

const get = (i: number): number[] => [Op.LocalGet, ...uleb(i)];
const set = (i: number): number[] => [Op.LocalSet, ...uleb(i)];
const tee = (i: number): number[] => [Op.LocalTee, ...uleb(i)];
const simd = (op: Simd): number[] => [Op.SimdPrefix, ...uleb(op)];
const splat = (scalarLocal: number): number[] => get(SPLAT0 + scalarLocal - DECAY);
const addr = (base: number): number[] => [...get(base), ...get(I), Op.I32Add];
// memarg: alignment hint (log2 bytes; 4-byte aligned is all the caller promises) and offset 0.
const MEMARG = [2, 0];

/** One pass of the update over byte offsets [I, end): four lanes (f32x4) or one (f32). */
function updateLoop(width: 4 | 1, end: number): number[] {
  const vector = width === 4;
  const load = vector ? [...simd(Simd.V128Load), ...MEMARG] : [Op.F32Load, ...MEMARG];
  const store = vector ? [...simd(Simd.V128Store), ...MEMARG] : [Op.F32Store, ...MEMARG];
  const k = (scalar: number): number[] => (vector ? splat(scalar) : get(scalar));
  const add = vector ? simd(Simd.Add) : [Op.F32Add];
  const sub = vector ? simd(Simd.Sub) : [Op.F32Sub];
  const mul = vector ? simd(Simd.Mul) : [Op.F32Mul];
  const div = vector ? simd(Simd.Div) : [Op.F32Div];
  const sqrt = vector ? simd(Simd.Sqrt) : [Op.F32Sqrt];
  const [g, m, v] = vector ? [GV, MV, VV] : [GS, MS, VS];
  return [
    Op.Block, VOID_BLOCK, Op.Loop, VOID_BLOCK,
    ...get(I), ...get(end), Op.I32GeU, Op.BrIf, 1,
    // g
    ...addr(G), ...load, ...set(g),
    // m = m * b1 + g * (1 - b1)
    ...addr(M),
    ...addr(M), ...load, ...k(B1), ...mul, ...get(g), ...k(OMB1), ...mul, ...add, ...tee(m),
    ...store,
    // v = v * b2 + ((1 - b2) * g) * g
    ...addr(V),
    ...addr(V), ...load, ...k(B2), ...mul, ...k(OMB2), ...get(g), ...mul, ...get(g), ...mul, ...add, ...tee(v),
    ...store,
    // p = p * decay - (step * m) / (sqrt(v) / bc2 + eps)
    ...addr(P),
    ...addr(P), ...load, ...k(DECAY), ...mul,
    ...k(STEP), ...get(m), ...mul,
    ...get(v), ...sqrt, ...k(BC2), ...div, ...k(EPS), ...add,
    ...div, ...sub,
    ...store,
    ...get(I), Op.I32Const, ...sleb(width * 4), Op.I32Add, ...set(I),
    Op.Br, 0,
    Op.End, Op.End,
  ];
}

function functionBody(): number[] {
  const locals = vec([
    [...uleb(3), I32], // I, END4, ENDALL
    [...uleb(8 + 3), V128], // splats, GV, MV, VV
    [...uleb(3), F32], // GS, MS, VS
  ]);
  const splats: number[] = [];
  for (let s = DECAY; s <= EPS; s++) splats.push(...get(s), ...simd(Simd.F32x4Splat), ...set(SPLAT0 + s - DECAY));
  const code = [
    ...locals,
    // END4 = (n & ~3) * 4, ENDALL = n * 4 (byte offsets); I starts at 0.
    ...get(N), Op.I32Const, ...sleb(-4), Op.I32And, Op.I32Const, 2, Op.I32Shl, ...set(END4),
    ...get(N), Op.I32Const, 2, Op.I32Shl, ...set(ENDALL),
    ...splats,
    ...updateLoop(4, END4),
    ...updateLoop(1, ENDALL),
    Op.End,
  ];
  return [...uleb(code.length), ...code];
}

/** The module's bytes. `shared` selects a shared imported memory (required for worker threads). */
export function adamwModuleBytes(shared: boolean, maxPages: number): Uint8Array<ArrayBuffer> {
  const params = [I32, I32, I32, I32, I32, F32, F32, F32, F32, F32, F32, F32, F32];
  const types = section(1, vec([[0x60, ...vec(params.map((t) => [t])), ...vec([])]]));
  // Memory limits: flag 0x03 = shared with maximum, 0x01 = maximum given.
  const limits = [shared ? 0x03 : 0x01, ...uleb(1), ...uleb(maxPages)];
  const imports = section(2, vec([[...str('env'), ...str('memory'), 0x02, ...limits]]));
  const funcs = section(3, vec([uleb(0)]));
  const exports = section(7, vec([[...str('adamw'), 0x00, ...uleb(0)]]));
  const code = section(10, vec([functionBody()]));
  return new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, ...types, ...imports, ...funcs, ...exports, ...code]);
}

/** The exported kernel's signature, as JS sees it. */
export type AdamWKernel = (
  p: number, g: number, m: number, v: number, n: number,
  decay: number, beta1: number, oneMinusBeta1: number, beta2: number, oneMinusBeta2: number,
  stepSize: number, bc2Sqrt: number, eps: number,
) => void;

/** Largest wasm32 memory: 65536 pages of 64 KiB = 4 GiB. */
export const WASM_PAGE_BYTES = 65536;
export const WASM_MAX_PAGES = 65536;
