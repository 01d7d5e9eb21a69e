// The host AdamW kernel as a WebAssembly SIMD module, emitted byte by byte with @zeroring/core's
// wasm-encoding.ts (the encoder the GPT's attention kernel shares). The module imports its memory,
// so worker threads can instantiate it over one shared memory. adamw(p, g, m, v, n, ...) updates n
// elements in torch 1.13's _single_tensor_adamw order, four lanes at a time then a scalar tail,
// bit-identical to host-adamw.ts's adamwStepF32.
// Details (the signature and the per-element update): docs/internals.md#host-adamw-kernel
import { wasm } from '@zeroring/core';

const { F32, I32, MEMARG, Op, Simd, V128, VOID_BLOCK, get, set, simd, sleb, tee, wasmModule } = wasm;

// Locals: 0..4 i32 pointers/count, 5..12 f32 scalars (the parameters), then our own.
const P = 0,
  G = 1,
  M = 2,
  V = 3,
  N = 4;
const DECAY = 5,
  B1 = 6,
  OMB1 = 7,
  B2 = 8,
  OMB2 = 9,
  STEP = 10,
  BC2 = 11,
  EPS = 12;
const I = 13,
  END4 = 14,
  ENDALL = 15; // i32: byte offset, end of the SIMD part, end of all
const SPLAT0 = 16; // v128 splats of DECAY..EPS, in the same order (SPLAT0 + (k - DECAY))
const GV = 24,
  MV = 25,
  VV = 26; // v128 scratch
const GS = 27,
  MS = 28,
  VS = 29; // f32 scratch for the tail

const splat = (scalarLocal: number): number[] => get(SPLAT0 + scalarLocal - DECAY);
const addr = (base: number): number[] => [...get(base), ...get(I), Op.I32Add];

/** One pass of the update over byte offsets [I, end): four lanes (f32x4) or one (f32). */
function updateLoop(width: 4 | 1, end: number): number[] {
  const vector = width === 4;
  const load = vector ? [...simd(Simd.V128Load), ...MEMARG] : [Op.F32Load, ...MEMARG];
  const store = vector ? [...simd(Simd.V128Store), ...MEMARG] : [Op.F32Store, ...MEMARG];
  const k = (scalar: number): number[] => (vector ? splat(scalar) : get(scalar));
  const add = vector ? simd(Simd.F32x4Add) : [Op.F32Add];
  const sub = vector ? simd(Simd.F32x4Sub) : [Op.F32Sub];
  const mul = vector ? simd(Simd.F32x4Mul) : [Op.F32Mul];
  const div = vector ? simd(Simd.F32x4Div) : [Op.F32Div];
  const sqrt = vector ? simd(Simd.F32x4Sqrt) : [Op.F32Sqrt];
  const [g, m, v] = vector ? [GV, MV, VV] : [GS, MS, VS];
  return [
    Op.Block,
    VOID_BLOCK,
    Op.Loop,
    VOID_BLOCK,
    ...get(I),
    ...get(end),
    Op.I32GeU,
    Op.BrIf,
    1,
    // g
    ...addr(G),
    ...load,
    ...set(g),
    // m = m * b1 + g * (1 - b1)
    ...addr(M),
    ...addr(M),
    ...load,
    ...k(B1),
    ...mul,
    ...get(g),
    ...k(OMB1),
    ...mul,
    ...add,
    ...tee(m),
    ...store,
    // v = v * b2 + ((1 - b2) * g) * g
    ...addr(V),
    ...addr(V),
    ...load,
    ...k(B2),
    ...mul,
    ...k(OMB2),
    ...get(g),
    ...mul,
    ...get(g),
    ...mul,
    ...add,
    ...tee(v),
    ...store,
    // p = p * decay - (step * m) / (sqrt(v) / bc2 + eps)
    ...addr(P),
    ...addr(P),
    ...load,
    ...k(DECAY),
    ...mul,
    ...k(STEP),
    ...get(m),
    ...mul,
    ...get(v),
    ...sqrt,
    ...k(BC2),
    ...div,
    ...k(EPS),
    ...add,
    ...div,
    ...sub,
    ...store,
    ...get(I),
    Op.I32Const,
    ...sleb(width * 4),
    Op.I32Add,
    ...set(I),
    Op.Br,
    0,
    Op.End,
    Op.End,
  ];
}

/** The module's bytes. `shared` selects a shared imported memory (required for worker threads). */
export function adamwModuleBytes(shared: boolean, maxPages: number): Uint8Array<ArrayBuffer> {
  const splats: number[] = [];
  for (let s = DECAY; s <= EPS; s++) splats.push(...get(s), ...simd(Simd.F32x4Splat), ...set(SPLAT0 + s - DECAY));
  const code = [
    // END4 = (n & ~3) * 4, ENDALL = n * 4 (byte offsets); I starts at 0.
    ...get(N),
    Op.I32Const,
    ...sleb(-4),
    Op.I32And,
    Op.I32Const,
    2,
    Op.I32Shl,
    ...set(END4),
    ...get(N),
    Op.I32Const,
    2,
    Op.I32Shl,
    ...set(ENDALL),
    ...splats,
    ...updateLoop(4, END4),
    ...updateLoop(1, ENDALL),
  ];
  const params = [I32, I32, I32, I32, I32, F32, F32, F32, F32, F32, F32, F32, F32];
  // Locals: I, END4, ENDALL; the splats, GV, MV, VV; GS, MS, VS.
  const locals: [number, number][] = [
    [3, I32],
    [8 + 3, V128],
    [3, F32],
  ];
  return wasmModule([{ name: 'adamw', params, locals, code }], { shared, maxPages });
}

/** The exported kernel's signature, as JS sees it. */
export type AdamWKernel = (
  p: number,
  g: number,
  m: number,
  v: number,
  n: number,
  decay: number,
  beta1: number,
  oneMinusBeta1: number,
  beta2: number,
  oneMinusBeta2: number,
  stepSize: number,
  bc2Sqrt: number,
  eps: number,
) => void;

export const { WASM_MAX_PAGES, WASM_PAGE_BYTES } = wasm;
