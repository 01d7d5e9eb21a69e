// The reductions against a plain reference, bit for bit: the WebAssembly SIMD sum must give
// exactly what float32 addition gives, at every length (the SIMD part, its blocks, the tail)
// and when the output aliases an input.
import { describe, expect, it } from 'vitest';
import { combine } from '../src/collectives/reduce-ops.ts';
import { simdArena } from '../src/collectives/simd-add.ts';
import { mulberry32 } from '@zeroring/core';

/** Random float32 bit patterns of every kind: normal, denormal, huge, tiny, ±0, ±Inf, NaN. */
function awkward(n: number, seed: number): Float32Array {
  const rnd = mulberry32(seed);
  const bits = new Uint32Array(n);
  for (let i = 0; i < n; i++) bits[i] = Math.floor(rnd() * 2 ** 32);
  const a = new Float32Array(bits.buffer);
  const specials = [0, -0, Infinity, -Infinity, NaN, 1e-45, 3.4e38, -3.4e38, 1, -1];
  for (let i = 0; i < n; i += 7) a[i] = specials[i % specials.length]!;
  return a;
}

function reference(x: Float32Array, y: Float32Array): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = Math.fround(x[i]! + y[i]!);
  return out;
}

/** NaN payloads are not specified: compare NaN-ness there, bits everywhere else. */
const canon = (a: Float32Array) => a.map((v) => (Number.isNaN(v) ? NaN : v));

const sameBits = (a: Float32Array, b: Float32Array) =>
  Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

describe('reduce ops', () => {
  for (const n of [0, 1, 3, 4095, 4096, 4099, 262_144, 262_147, 600_001]) {
    it(`sum of ${n} elements equals float32 addition bit for bit, also in place`, () => {
      const x = awkward(n, n + 1);
      const y = awkward(n, n + 2);
      const want = reference(x, y);
      const out = new Float32Array(n);
      combine('sum', out, x, y);
      expect(sameBits(canon(out), canon(want))).toBe(true);
      const xin = x.slice();
      combine('sum', xin, xin, y);
      expect(sameBits(canon(xin), canon(want))).toBe(true);
      const yin = y.slice();
      combine('sum', yin, x, yin);
      expect(sameBits(canon(yin), canon(want))).toBe(true);
    });
  }

  it('views at any offset work (subarrays of a larger buffer)', () => {
    const big = awkward(300_001, 9);
    const x = big.subarray(1, 280_001);
    const y = big.subarray(20_001, 300_001);
    const want = reference(x, y);
    const out = new Float32Array(big.length).subarray(5, 280_005);
    combine('sum', out, x, y);
    expect(sameBits(canon(out), canon(want))).toBe(true);
  });

  it('operands inside the SIMD arena are used in place, in any mix with outside ones', () => {
    const n = 262_147;
    const x = awkward(n, 31);
    const y = awkward(n, 32);
    const want = reference(x, y);
    const inArena = (a: Float32Array): Float32Array => {
      const bytes = simdArena(a.byteLength)!;
      expect(bytes).not.toBeNull();
      const v = new Float32Array(bytes.buffer, bytes.byteOffset, a.length);
      v.set(a);
      return v;
    };
    for (const [xa, ya, oa] of [
      [true, false, true],
      [false, true, false],
      [true, true, false],
      [false, false, true],
      [true, true, true],
    ]) {
      const xs = xa ? inArena(x) : x.slice();
      const ys = ya ? inArena(y) : y.slice();
      const out = oa ? inArena(new Float32Array(n)) : new Float32Array(n);
      combine('sum', out, xs, ys);
      expect(sameBits(canon(out), canon(want)), `x ${xa} y ${ya} out ${oa}`).toBe(true);
      // In place into an arena operand: the ring's reduce-scatter step.
      combine('sum', xs, xs, ys);
      expect(sameBits(canon(xs), canon(want)), `in place, x ${xa} y ${ya}`).toBe(true);
    }
  });
});
