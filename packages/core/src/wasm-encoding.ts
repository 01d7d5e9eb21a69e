// The few WebAssembly binary-format pieces our hand-emitted SIMD kernels need.
//
// Each kernel is a handful of loops, so emitting the bytes from TypeScript is cheaper than a
// toolchain dependency (wabt, binaryen, emscripten) and keeps every instruction visible next to
// the math it implements. Used by comm's SIMD reduction, train's host AdamW and gpt's attention.

/** Core opcodes (WebAssembly 1.0, section 5.4). */
export const Op = {
  Block: 0x02,
  Loop: 0x03,
  Br: 0x0c,
  BrIf: 0x0d,
  End: 0x0b,
  Select: 0x1b,
  LocalGet: 0x20,
  LocalSet: 0x21,
  LocalTee: 0x22,
  F32Load: 0x2a,
  F32Store: 0x38,
  I32Const: 0x41,
  F32Const: 0x43,
  I32GeU: 0x4f,
  I32GtU: 0x4b,
  I32Add: 0x6a,
  I32Mul: 0x6c,
  I32And: 0x71,
  I32Shl: 0x74,
  F32Sqrt: 0x91,
  F32Add: 0x92,
  F32Sub: 0x93,
  F32Mul: 0x94,
  F32Div: 0x95,
  SimdPrefix: 0xfd,
} as const;

/** SIMD opcodes, which follow Op.SimdPrefix as unsigned LEB128. */
export const Simd = {
  V128Load: 0x00,
  V128Store: 0x0b,
  F32x4Splat: 0x13,
  F32x4ExtractLane: 0x1f,
  F32x4Sqrt: 0xe3,
  F32x4Add: 0xe4,
  F32x4Sub: 0xe5,
  F32x4Mul: 0xe6,
  F32x4Div: 0xe7,
} as const;

/** Value types, and the block type of a block that yields nothing. */
export const I32 = 0x7f,
  F32 = 0x7d,
  V128 = 0x7b,
  VOID_BLOCK = 0x40;

export function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

export function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    const done = (n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0);
    out.push(done ? byte : byte | 0x80);
    if (done) return out;
  }
}

export const str = (s: string): number[] => [...uleb(s.length), ...Buffer.from(s, 'latin1')];
export const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
export const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body];

export const get = (i: number): number[] => [Op.LocalGet, ...uleb(i)];
export const set = (i: number): number[] => [Op.LocalSet, ...uleb(i)];
export const tee = (i: number): number[] => [Op.LocalTee, ...uleb(i)];
export const i32 = (n: number): number[] => [Op.I32Const, ...sleb(n)];
export const simd = (op: number): number[] => [Op.SimdPrefix, ...uleb(op)];
/** memarg: alignment hint (log2 bytes; 4-byte aligned is all our callers promise) and offset 0. */
export const MEMARG = [2, 0];

/** `block { loop { if (exitWhen) break; body; continue } }`: exitWhen and body are code. */
export function whileNot(exitWhen: number[], body: number[]): number[] {
  return [Op.Block, VOID_BLOCK, Op.Loop, VOID_BLOCK, ...exitWhen, Op.BrIf, 1, ...body, Op.Br, 0, Op.End, Op.End];
}

export interface WasmFunction {
  name: string;
  params: number[];
  /** Local declarations after the parameters, as [count, type] runs. */
  locals: [number, number][];
  /** Instructions, without the final `end`. */
  code: number[];
}

/**
 * A module that imports its memory as env.memory (limits: minimum 1 page, maximum maxPages if
 * given; `shared` for worker threads over one SharedArrayBuffer, which needs a maximum) and
 * exports the given functions, none of which returns a value.
 */
export function wasmModule(
  funcs: WasmFunction[],
  memory: { shared: true; maxPages: number } | { shared: false; maxPages?: number },
): Uint8Array<ArrayBuffer> {
  const types = section(1, vec(funcs.map((f) => [0x60, ...vec(f.params.map((t) => [t])), ...vec([])])));
  // Memory limits: flag 0x03 = shared with maximum, 0x01 = maximum given, 0x00 = minimum only.
  const max = memory.maxPages === undefined ? [] : uleb(memory.maxPages);
  const limits = [memory.shared ? 0x03 : max.length ? 0x01 : 0x00, ...uleb(1), ...max];
  const imports = section(2, vec([[...str('env'), ...str('memory'), 0x02, ...limits]]));
  const funcSection = section(3, vec(funcs.map((_, i) => uleb(i))));
  const exports = section(7, vec(funcs.map((f, i) => [...str(f.name), 0x00, ...uleb(i)])));
  const bodies = funcs.map((f) => {
    const body = [...vec(f.locals.map(([n, t]) => [...uleb(n), t])), ...f.code, Op.End];
    return [...uleb(body.length), ...body];
  });
  const code = section(10, vec(bodies));
  return new Uint8Array([
    0x00,
    0x61,
    0x73,
    0x6d,
    0x01,
    0x00,
    0x00,
    0x00,
    ...types,
    ...imports,
    ...funcSection,
    ...exports,
    ...code,
  ]);
}

/** One wasm32 page: 64 KiB; the largest memory is 65536 pages (4 GiB). */
export const WASM_PAGE_BYTES = 65536;
export const WASM_MAX_PAGES = 65536;
