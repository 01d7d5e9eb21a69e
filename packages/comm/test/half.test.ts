// The 16-bit codecs of the 16-bit all-reduce against references built another way: instead of
// bit tricks, the nearest representable value found by its distance (ties to the even
// encoding), over every exponent range, subnormals, the edges of float16's range and the
// specials; and every 16-bit pattern decodes and re-encodes to itself.
import { describe, expect, it } from 'vitest';
import { mulberry32 } from '@zeroring/core';
import { BF16, F16, bf16Bits, f16Bits } from '../src/collectives/half.ts';

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
const bitsOf = (x: number): number => ((f32[0] = x), u32[0]!);

/** Values every codec must get right: random bit patterns plus the hard cases. */
function samples(): number[] {
  const rnd = mulberry32(42);
  const out: number[] = [];
  for (let i = 0; i < 20000; i++) {
    u32[0] = Math.floor(rnd() * 2 ** 32);
    out.push(f32[0]!);
  }
  // Across float16's range, its subnormals and the ties between neighbours.
  for (let e = -26; e <= 17; e++) for (let k = 0; k < 40; k++) out.push((rnd() * 2 - 1) * 2 ** e);
  for (let h = 1; h < 2048; h += 37) out.push((h + 0.5) * 2 ** -24, (h + 0.5) * 2 ** -14, (1024 + h + 0.5) * 2 ** -10);
  out.push(0, -0, 65504, 65519.99, 65520, 65536, -65520, 2 ** -25, 2 ** -24, 3 * 2 ** -26, 1e-8, 1, -1, 1 / 3);
  out.push(Infinity, -Infinity, 3.4e38, -3.4e38);
  return out.map((x) => Math.fround(x));
}

/** The nearest of two candidates, ties to the one whose encoding is even. */
function nearest(x: number, lo: [number, number], hi: [number, number]): number {
  const dl = Math.abs(x - lo[0]);
  const dh = Math.abs(hi[0] - x);
  if (dl < dh) return lo[1];
  if (dh < dl) return hi[1];
  return (lo[1] & 1) === 0 ? lo[1] : hi[1];
}

function bf16Value(h: number): number {
  u32[0] = h << 16;
  return f32[0]!;
}

/** bfloat16 by distance: the two bfloat16 values around x are its bits truncated, and one ulp further out. */
function bf16Reference(x: number): number {
  const b = bitsOf(x);
  const lo = b >>> 16;
  if (!Number.isFinite(x)) return lo;
  const hi = lo + 1;
  // Rounding treats Inf as the next power of two after the largest finite value (IEEE 754).
  const hiValue = (hi & 0x7fff) === 0x7f80 ? 2 ** 128 : Math.abs(bf16Value(hi));
  return nearest(Math.abs(x), [Math.abs(bf16Value(lo)), lo], [hiValue, hi]);
}

/** Every finite non-negative float16 value, ascending with its encoding. */
const F16_POSITIVE: [number, number][] = [];
for (let h = 0; h < 0x7c00; h++) {
  const e = h >> 10;
  const m = h & 0x3ff;
  F16_POSITIVE.push([e === 0 ? m * 2 ** -24 : (1 + m / 1024) * 2 ** (e - 15), h]);
}

function f16Reference(x: number): number {
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a === Infinity) return sign | 0x7c00;
  // Past 65504 + half an ulp (16) it rounds to Inf; exactly at it the tie goes to the even side, Inf.
  if (a >= 65520) return sign | 0x7c00;
  // The last value <= a, by bisection.
  let i = 0;
  let j = F16_POSITIVE.length - 1;
  while (i < j) {
    const mid = (i + j + 1) >> 1;
    if (F16_POSITIVE[mid]![0] <= a) i = mid;
    else j = mid - 1;
  }
  const lo = F16_POSITIVE[i]!;
  const hi = F16_POSITIVE[i + 1] ?? [65536, 0x7c00];
  return sign | nearest(a, lo, hi as [number, number]);
}

describe('16-bit codecs', () => {
  const xs = samples();

  it('bfloat16 rounds to the nearest value, ties to even, as a float32 cast does', () => {
    for (const x of xs) expect(bf16Bits(bitsOf(x)), `bf16(${x})`).toBe(bf16Reference(x));
    // NaN stays NaN (quiet), whatever its payload.
    for (const b of [0x7fc00000, 0x7f800001, 0xff800001]) expect(Number.isNaN(bf16Value(bf16Bits(b)))).toBe(true);
  });

  it('float16 rounds to the nearest value, ties to even; subnormals kept, past 65504 + half an ulp Inf', () => {
    for (const x of xs) {
      if (Number.isNaN(x)) continue;
      expect(f16Bits(bitsOf(x)), `f16(${x})`).toBe(f16Reference(x));
    }
    expect(f16Bits(bitsOf(65519))).toBe(0x7bff);
    expect(f16Bits(bitsOf(65520))).toBe(0x7c00);
    const nan = new Float32Array(1);
    F16.decode(new Uint16Array([f16Bits(0x7fc00000)]), nan);
    expect(Number.isNaN(nan[0])).toBe(true);
  });

  it('every 16-bit pattern decodes to a float32 that encodes back to it (NaN to a NaN)', () => {
    for (const codec of [BF16, F16]) {
      const all = new Uint16Array(65536).map((_, i) => i);
      const values = new Float32Array(65536);
      codec.decode(all, values);
      const back = new Uint16Array(65536);
      codec.encode(values, back);
      for (let h = 0; h < 65536; h++) {
        if (Number.isNaN(values[h])) expect(Number.isNaN(values[back[h]!]), `${codec.dtype} ${h}`).toBe(true);
        else expect(back[h], `${codec.dtype} ${h}`).toBe(h);
      }
    }
  });

  it('encode and decode over arrays agree with the element functions', () => {
    const src = Float32Array.from(xs.filter((x) => !Number.isNaN(x)));
    const bf = new Uint16Array(src.length);
    const hf = new Uint16Array(src.length);
    BF16.encode(src, bf);
    F16.encode(src, hf);
    for (let i = 0; i < src.length; i++) {
      expect(bf[i]).toBe(bf16Bits(bitsOf(src[i]!)));
      expect(hf[i]).toBe(f16Bits(bitsOf(src[i]!)));
    }
  });
});
