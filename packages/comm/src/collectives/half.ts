// 16-bit float codecs for what a collective puts on the wire: bfloat16 (the top half of a float32,
// its range, 8 bits of mantissa) and IEEE float16 (5-bit exponent, 11 bits of precision, finite up
// to 65504). Both round to nearest, ties to even, as a cast does on a GPU; NaN stays NaN, and a
// float16 too large for its range becomes Inf (the caller decides what an overflow means).
// Encoding reads the float32 bits through a Uint32Array view; float16 decodes through a
// 65536-entry table (256 KiB, built on first use), which is faster than rebuilding each float.

export type HalfDtype = 'bfloat16' | 'float16';

export interface HalfCodec {
  readonly dtype: HalfDtype;
  /** dst[i] = the 16-bit encoding of src[i]. */
  encode(src: Float32Array, dst: Uint16Array): void;
  /** dst[i] = the float32 value of src[i] (exact: every 16-bit value is a float32). */
  decode(src: Uint16Array, dst: Float32Array): void;
}

function bitsOf(a: Float32Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length);
}

/** bfloat16 of float32 bits: round the low 16 bits away, to nearest even. */
export function bf16Bits(x: number): number {
  if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) return ((x >>> 16) | 0x40) & 0xffff; // quiet NaN
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** IEEE float16 of float32 bits, round to nearest even; subnormals kept, overflow to Inf. */
export function f16Bits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0);
  const e = exp - 112; // rebias 127 -> 15
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // A float16 subnormal counts units of 2^-24: the value is full * 2^(exp - 150) = full >> (126 - exp).
    const shift = 126 - exp;
    if (shift > 24) return sign;
    const full = mant | 0x800000;
    let m = full >>> shift;
    const rem = full & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (m & 1) !== 0)) m++;
    return sign | m; // m may carry into 0x400, the smallest normal: the right encoding
  }
  let h = sign | (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // A carry out of the mantissa steps the exponent, up to Inf: rounding past 65504 overflows.
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1) !== 0)) h++;
  return h;
}

function f16Value(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? Number.NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

let f16Table: Float32Array | null = null;

function f16Decoded(): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = f16Value(h);
  }
  return f16Table;
}

export const BF16: HalfCodec = {
  dtype: 'bfloat16',
  encode(src, dst) {
    const bits = bitsOf(src);
    for (let i = 0; i < bits.length; i++) dst[i] = bf16Bits(bits[i]!);
  },
  decode(src, dst) {
    const bits = bitsOf(dst);
    for (let i = 0; i < src.length; i++) bits[i] = src[i]! << 16;
  },
};

export const F16: HalfCodec = {
  dtype: 'float16',
  encode(src, dst) {
    const bits = bitsOf(src);
    for (let i = 0; i < bits.length; i++) dst[i] = f16Bits(bits[i]!);
  },
  decode(src, dst) {
    const table = f16Decoded();
    for (let i = 0; i < src.length; i++) dst[i] = table[src[i]!]!;
  },
};

export function codecOf(dtype: HalfDtype): HalfCodec {
  return dtype === 'bfloat16' ? BF16 : F16;
}

/** Rounds buf in place to the values the 16-bit type can hold (what a trip over the wire leaves). */
export function roundTo(codec: HalfCodec, buf: Float32Array): void {
  const tmp = new Uint16Array(buf.length);
  codec.encode(buf, tmp);
  codec.decode(tmp, buf);
}
