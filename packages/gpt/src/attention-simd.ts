// The causal-attention kernel of attention.ts in WebAssembly SIMD (f32x4), for the CPU backends:
// the JavaScript kernel was ~38 % of a tiny-GPT step on wasm. The work is two shapes of small
// matrix product over one head's rows ("dots" and "weighted"), with rows given by address and
// stride so q, k, v are read from the packed qkv rows; softmax stays in JavaScript. The module has
// its own memory: inputs are copied in and outputs out.
// Details: docs/internals.md#attention-simd
import { wasm } from '@zeroring/core';

/** Batch, sequence length and heads of an attention call (the channel count C is passed apart). */
export interface AttentionShape {
  B: number;
  T: number;
  H: number;
}

const { F32, I32, MEMARG, Op, Simd, V128, WASM_MAX_PAGES, WASM_PAGE_BYTES, get, i32, set, simd, wasmModule, whileNot } =
  wasm;
type WasmFunction = wasm.WasmFunction;

const v128Load = [...simd(Simd.V128Load), ...MEMARG];
const v128Store = [...simd(Simd.V128Store), ...MEMARG];
const f32Load = [Op.F32Load, ...MEMARG];
const f32Store = [Op.F32Store, ...MEMARG];

/** dots(a, aStride, b, bStride, out, T, n4, scale): lower triangle of scale * A B^T, row length 4*n4. */
function dotsFunction(): WasmFunction {
  const [A, AS, B, BS, OUT, T, N4, SCALE] = [0, 1, 2, 3, 4, 5, 6, 7];
  const [I, J, K, AI, BJ, OI, NB, ACC] = [8, 9, 10, 11, 12, 13, 14, 15];
  const lane = (n: number) => [...get(ACC), ...simd(Simd.F32x4ExtractLane), n];
  const code = [
    ...get(N4),
    ...i32(4),
    Op.I32Shl,
    ...set(NB),
    ...i32(0),
    ...set(I),
    ...get(A),
    ...set(AI),
    ...get(OUT),
    ...set(OI),
    ...whileNot(
      [...get(I), ...get(T), Op.I32GeU],
      [
        ...i32(0),
        ...set(J),
        ...get(B),
        ...set(BJ),
        ...whileNot(
          [...get(J), ...get(I), Op.I32GtU],
          [
            Op.F32Const,
            0,
            0,
            0,
            0,
            ...simd(Simd.F32x4Splat),
            ...set(ACC),
            ...i32(0),
            ...set(K),
            ...whileNot(
              [...get(K), ...get(NB), Op.I32GeU],
              [
                ...get(ACC),
                ...get(AI),
                ...get(K),
                Op.I32Add,
                ...v128Load,
                ...get(BJ),
                ...get(K),
                Op.I32Add,
                ...v128Load,
                ...simd(Simd.F32x4Mul),
                ...simd(Simd.F32x4Add),
                ...set(ACC),
                ...get(K),
                ...i32(16),
                Op.I32Add,
                ...set(K),
              ],
            ),
            // out[i][j] = ((l0 + l1) + (l2 + l3)) * scale
            ...get(OI),
            ...get(J),
            ...i32(2),
            Op.I32Shl,
            Op.I32Add,
            ...lane(0),
            ...lane(1),
            Op.F32Add,
            ...lane(2),
            ...lane(3),
            Op.F32Add,
            Op.F32Add,
            ...get(SCALE),
            Op.F32Mul,
            ...f32Store,
            ...get(J),
            ...i32(1),
            Op.I32Add,
            ...set(J),
            ...get(BJ),
            ...get(BS),
            Op.I32Add,
            ...set(BJ),
          ],
        ),
        ...get(I),
        ...i32(1),
        Op.I32Add,
        ...set(I),
        ...get(AI),
        ...get(AS),
        Op.I32Add,
        ...set(AI),
        ...get(OI),
        ...get(T),
        ...i32(2),
        Op.I32Shl,
        Op.I32Add,
        ...set(OI),
      ],
    ),
  ];
  return {
    name: 'dots',
    params: [I32, I32, I32, I32, I32, I32, I32, F32],
    locals: [
      [7, I32],
      [1, V128],
    ],
    code,
  };
}

/**
 * weighted(w, wRow, wCol, b, bStride, out, outStride, T, n4, upper): out_r = sum_c w(r, c) b_c,
 * w(r, c) at w + r*wRow + c*wCol (bytes), c over [0, r] (upper = 0) or [r, T) (upper = 1).
 * Four output columns at a time, summing over c into one f32x4.
 */
function weightedFunction(): WasmFunction {
  const [W, WR, WC, B, BS, OUT, OS, T, N4, UPPER] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
  const [R, C0, CEND, CC, K, NB, WROW, OROW, BC, WRC, ACC] = [10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20];
  const code = [
    ...get(N4),
    ...i32(4),
    Op.I32Shl,
    ...set(NB),
    ...i32(0),
    ...set(R),
    ...get(W),
    ...set(WROW),
    ...get(OUT),
    ...set(OROW),
    ...whileNot(
      [...get(R), ...get(T), Op.I32GeU],
      [
        // c0 = upper ? r : 0; cEnd = upper ? T : r + 1
        ...get(R),
        ...i32(0),
        ...get(UPPER),
        Op.Select,
        ...set(C0),
        ...get(T),
        ...get(R),
        ...i32(1),
        Op.I32Add,
        ...get(UPPER),
        Op.Select,
        ...set(CEND),
        ...i32(0),
        ...set(K),
        ...whileNot(
          [...get(K), ...get(NB), Op.I32GeU],
          [
            Op.F32Const,
            0,
            0,
            0,
            0,
            ...simd(Simd.F32x4Splat),
            ...set(ACC),
            ...get(C0),
            ...set(CC),
            ...get(B),
            ...get(C0),
            ...get(BS),
            Op.I32Mul,
            Op.I32Add,
            ...get(K),
            Op.I32Add,
            ...set(BC),
            ...get(WROW),
            ...get(C0),
            ...get(WC),
            Op.I32Mul,
            Op.I32Add,
            ...set(WRC),
            ...whileNot(
              [...get(CC), ...get(CEND), Op.I32GeU],
              [
                ...get(ACC),
                ...get(WRC),
                ...f32Load,
                ...simd(Simd.F32x4Splat),
                ...get(BC),
                ...v128Load,
                ...simd(Simd.F32x4Mul),
                ...simd(Simd.F32x4Add),
                ...set(ACC),
                ...get(CC),
                ...i32(1),
                Op.I32Add,
                ...set(CC),
                ...get(BC),
                ...get(BS),
                Op.I32Add,
                ...set(BC),
                ...get(WRC),
                ...get(WC),
                Op.I32Add,
                ...set(WRC),
              ],
            ),
            ...get(OROW),
            ...get(K),
            Op.I32Add,
            ...get(ACC),
            ...v128Store,
            ...get(K),
            ...i32(16),
            Op.I32Add,
            ...set(K),
          ],
        ),
        ...get(R),
        ...i32(1),
        Op.I32Add,
        ...set(R),
        ...get(WROW),
        ...get(WR),
        Op.I32Add,
        ...set(WROW),
        ...get(OROW),
        ...get(OS),
        Op.I32Add,
        ...set(OROW),
      ],
    ),
  ];
  return {
    name: 'weighted',
    params: [I32, I32, I32, I32, I32, I32, I32, I32, I32, I32],
    locals: [
      [10, I32],
      [1, V128],
    ],
    code,
  };
}

type Dots = (
  a: number,
  aStride: number,
  b: number,
  bStride: number,
  out: number,
  T: number,
  n4: number,
  scale: number,
) => void;
type Weighted = (
  w: number,
  wRow: number,
  wCol: number,
  b: number,
  bStride: number,
  out: number,
  outStride: number,
  T: number,
  n4: number,
  upper: number,
) => void;

interface Kernel {
  memory: WebAssembly.Memory;
  dots: Dots;
  weighted: Weighted;
}

let kernel: Kernel | null | undefined;

/** The compiled kernel, or null where this runtime has no WebAssembly SIMD. */
function getKernel(): Kernel | null {
  if (kernel !== undefined) return kernel;
  try {
    const memory = new WebAssembly.Memory({ initial: 1, maximum: WASM_MAX_PAGES });
    const bytes = wasmModule([dotsFunction(), weightedFunction()], { shared: false, maxPages: WASM_MAX_PAGES });
    const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { memory } });
    const e = instance.exports as unknown as { dots: Dots; weighted: Weighted };
    kernel = { memory, dots: e.dots, weighted: e.weighted };
  } catch {
    kernel = null;
  }
  return kernel;
}

/** Whether the SIMD kernel can run this shape: head size a multiple of 4 (whole f32x4 lanes). */
export function simdAttentionAvailable(C: number, H: number): boolean {
  return (C / H) % 4 === 0 && getKernel() !== null;
}

/** Lays out `sizes` (in floats) one after another in the kernel's memory, growing it as needed. */
function regions(k: Kernel, sizes: number[]): { views: Float32Array[]; ptrs: number[] } {
  const total = sizes.reduce((a, b) => a + b, 0) * 4;
  const have = k.memory.buffer.byteLength;
  if (total > have) k.memory.grow(Math.ceil((total - have) / WASM_PAGE_BYTES));
  const views: Float32Array[] = [];
  const ptrs: number[] = [];
  let at = 0;
  for (const n of sizes) {
    ptrs.push(at);
    views.push(new Float32Array(k.memory.buffer, at, n));
    at += n * 4;
  }
  return { views, ptrs };
}

/** Same contract as attention.ts's attentionForward: fills zeroed y [B*T, C] and att [B*H, T, T]. */
export function attentionForwardSimd(
  qkv: Float32Array,
  { B, T, H }: AttentionShape,
  C: number,
  y: Float32Array,
  att: Float32Array,
): void {
  const k = getKernel()!;
  const hs = C / H;
  const row = 3 * C;
  const { views, ptrs } = regions(k, [qkv.length, att.length, y.length]);
  const [qkvM, attM, yM] = views as [Float32Array, Float32Array, Float32Array];
  const [qkvP, attP, yP] = ptrs as [number, number, number];
  qkvM.set(qkv);
  attM.fill(0); // dots writes the lower triangle only
  const scale = 1 / Math.sqrt(hs);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const q = qkvP + (b * T * row + h * hs) * 4;
      const a0 = (b * H + h) * T * T;
      k.dots(q, row * 4, q + C * 4, row * 4, attP + a0 * 4, T, hs / 4, scale);
      softmaxRows(attM, a0, T);
      k.weighted(attP + a0 * 4, T * 4, 4, q + 2 * C * 4, row * 4, yP + (b * T * C + h * hs) * 4, C * 4, T, hs / 4, 0);
    }
  }
  y.set(yM);
  att.set(attM);
}

/** Causal softmax of each row of one head's scores, in place (upper triangle left 0). */
function softmaxRows(att: Float32Array, a0: number, T: number): void {
  for (let i = 0; i < T; i++) {
    const ai = a0 + i * T;
    let max = -Infinity;
    for (let j = 0; j <= i; j++) if (att[ai + j]! > max) max = att[ai + j]!;
    const inv = 1 / exponentiateRow(att, ai, i + 1, max);
    for (let j = 0; j <= i; j++) att[ai + j] = att[ai + j]! * inv;
  }
}

/** att[from + j] = exp(att[from + j] - max) for j < count; returns their sum (the softmax denominator). */
export function exponentiateRow(att: Float32Array, from: number, count: number, max: number): number {
  let sum = 0;
  for (let j = from; j < from + count; j++) {
    const e = Math.exp(att[j]! - max);
    att[j] = e;
    sum += e;
  }
  return sum;
}

/** Same contract as attention.ts's attentionBackward: fills zeroed dqkv [B*T, 3C]. */
export function attentionBackwardSimd(
  qkv: Float32Array,
  att: Float32Array,
  dy: Float32Array,
  { B, T, H }: AttentionShape,
  C: number,
  dqkv: Float32Array,
): void {
  const k = getKernel()!;
  const hs = C / H;
  const row = 3 * C;
  const n4 = hs / 4;
  const { views, ptrs } = regions(k, [qkv.length, att.length, dy.length, dqkv.length, T * T]);
  const [qkvM, attM, dyM, dqkvM, dsM] = views as [Float32Array, Float32Array, Float32Array, Float32Array, Float32Array];
  const [qkvP, attP, dyP, dqkvP, dsP] = ptrs as [number, number, number, number, number];
  qkvM.set(qkv);
  attM.set(att);
  dyM.set(dy);
  const scale = 1 / Math.sqrt(hs);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const off = (b * T * row + h * hs) * 4; // q of row 0 of this head; k and v follow at +C, +2C
      const q = qkvP + off;
      const dyH = dyP + (b * T * C + h * hs) * 4;
      const a0 = (b * H + h) * T * T;
      // dp_ij = dy_i . v_j, then ds_ij = scale * p_ij (dp_ij - sum_j' p_ij' dp_ij'), in place.
      k.dots(dyH, C * 4, q + 2 * C * 4, row * 4, dsP, T, n4, 1);
      for (let i = 0; i < T; i++) {
        let rowDot = 0;
        for (let j = 0; j <= i; j++) rowDot += attM[a0 + i * T + j]! * dsM[i * T + j]!;
        for (let j = 0; j <= i; j++) dsM[i * T + j] = attM[a0 + i * T + j]! * (dsM[i * T + j]! - rowDot) * scale;
      }
      // dq_i = sum_{j<=i} ds_ij k_j;  dk_j = sum_{i>=j} ds_ij q_i;  dv_j = sum_{i>=j} p_ij dy_i
      k.weighted(dsP, T * 4, 4, q + C * 4, row * 4, dqkvP + off, row * 4, T, n4, 0);
      k.weighted(dsP, 4, T * 4, q, row * 4, dqkvP + off + C * 4, row * 4, T, n4, 1);
      k.weighted(attP + a0 * 4, 4, T * 4, dyH, C * 4, dqkvP + off + 2 * C * 4, row * 4, T, n4, 1);
    }
  }
  dqkv.set(dqkvM);
}
