// The WebAssembly SIMD attention kernel against the JavaScript one it replaces on CPU backends
// (attention.ts's attentionForward/attentionBackward, themselves checked against tfjs autodiff in
// ops.test.ts), on random data and awkward shapes: one position, odd lengths, one head, the
// tiny GPT's own shape.
import { describe, expect, it } from 'vitest';
import { attentionBackward, attentionForward } from '../src/attention.ts';
import { attentionBackwardSimd, attentionForwardSimd, simdAttentionAvailable } from '../src/attention-simd.ts';
import { Rng } from '@zeroring/core';

const random = (n: number, seed: number): Float32Array => {
  const rng = new Rng(seed);
  return Float32Array.from({ length: n }, () => rng.normal());
};

/** max |a - b| over max |b|. */
function relErr(a: Float32Array, b: Float32Array): number {
  let diff = 0;
  let scale = 1e-6;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return diff / scale;
}

describe('SIMD attention kernel', () => {
  it('is available for head sizes that are whole f32x4 lanes, and only those', () => {
    expect(simdAttentionAvailable(128, 4)).toBe(true);
    expect(simdAttentionAvailable(12, 3)).toBe(true);
    expect(simdAttentionAvailable(9, 3)).toBe(false);
    expect(simdAttentionAvailable(384, 6)).toBe(true);
  });

  it.each([
    { B: 1, T: 1, H: 1, C: 4 },
    { B: 2, T: 5, H: 2, C: 8 },
    { B: 3, T: 7, H: 3, C: 12 },
    { B: 1, T: 13, H: 1, C: 32 },
    { B: 16, T: 64, H: 4, C: 128 }, // the tiny GPT
  ])('matches the JavaScript kernel forward and backward at B=$B T=$T H=$H C=$C', ({ B, T, H, C }) => {
    const shape = { B, T, H };
    const qkv = random(B * T * 3 * C, B * 1000 + T);
    const dy = random(B * T * C, T * 1000 + C);
    const want = {
      y: new Float32Array(B * T * C),
      att: new Float32Array(B * H * T * T),
      dqkv: new Float32Array(B * T * 3 * C),
    };
    const got = {
      y: new Float32Array(B * T * C),
      att: new Float32Array(B * H * T * T),
      dqkv: new Float32Array(B * T * 3 * C),
    };
    attentionForward(qkv, shape, C, want.y, want.att);
    attentionForwardSimd(qkv, shape, C, got.y, got.att);
    expect(relErr(got.y, want.y)).toBeLessThan(1e-5);
    expect(relErr(got.att, want.att)).toBeLessThan(1e-5);
    // Above the diagonal the probabilities stay exactly 0 (masked).
    for (let bh = 0; bh < B * H; bh++)
      for (let i = 0; i < T; i++) for (let j = i + 1; j < T; j++) expect(got.att[(bh * T + i) * T + j]).toBe(0);
    attentionBackward(qkv, want.att, dy, shape, C, want.dqkv);
    attentionBackwardSimd(qkv, want.att, dy, shape, C, got.dqkv);
    expect(relErr(got.dqkv, want.dqkv)).toBeLessThan(1e-5);
  });

  it('gives the same answers after its memory has grown for a larger shape', () => {
    const small = { B: 1, T: 3, H: 1 };
    const qkv = random(3 * 12, 7);
    const first = { y: new Float32Array(3 * 4), att: new Float32Array(9) };
    attentionForwardSimd(qkv, small, 4, first.y, first.att);
    const big = { B: 8, T: 128, H: 6 }; // ~30 MB of kernel memory: grows it
    const C = 192;
    attentionForwardSimd(
      random(8 * 128 * 3 * C, 8),
      big,
      C,
      new Float32Array(8 * 128 * C),
      new Float32Array(8 * 6 * 128 * 128),
    );
    const again = { y: new Float32Array(3 * 4), att: new Float32Array(9) };
    attentionForwardSimd(qkv, small, 4, again.y, again.att);
    expect(again.y).toEqual(first.y);
    expect(again.att).toEqual(first.att);
  });
});
