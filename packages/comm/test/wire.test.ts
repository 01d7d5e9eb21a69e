import { describe, expect, it } from 'vitest';
import {
  asFloat32,
  bytesOf,
  decode,
  encode,
  encodeCredit,
  encodeShm,
  INLINE_MAX_BYTES,
  MsgType,
  type DataHeader,
} from '../src/transport/wire.ts';

const h: DataHeader = { t: MsgType.Data, q: 7, c: 'allReduce', o: 'sum', n: 5, d: 'float32', r: -1, s: 1, k: 2 };

describe('wire format', () => {
  it('small payloads ride inline, 8-byte aligned after the header', () => {
    const data = new Float32Array([1, 2, 3, 4.5, -0]);
    const frames = encode(h, bytesOf(data));
    expect(frames).toHaveLength(1);
    const d = decode(frames[0]!);
    expect(d.h).toEqual(h);
    expect(d.separate).toBe(false);
    expect(d.payload!.byteOffset % 8).toBe(frames[0]!.byteOffset % 8);
    expect(Array.from(asFloat32(d.payload!))).toEqual([1, 2, 3, 4.5, -0]);
  });

  it("large payloads go as a second frame holding the caller's bytes, uncopied", () => {
    const data = new Float32Array(INLINE_MAX_BYTES / 4 + 1).fill(3);
    const frames = encode(h, bytesOf(data));
    expect(frames).toHaveLength(2);
    expect(frames[1]!.buffer).toBe(data.buffer);
    expect(decode(frames[0]!).separate).toBe(true);
  });

  it('views aligned bytes in place and copies misaligned ones', () => {
    const buf = new Uint8Array(17);
    new Float32Array(buf.buffer, 4, 2).set([1, 2]);
    const aligned = asFloat32(buf.subarray(4, 12));
    expect(aligned.buffer).toBe(buf.buffer);
    buf.copyWithin(1, 4, 12);
    const copied = asFloat32(buf.subarray(1, 9));
    expect(copied.buffer).not.toBe(buf.buffer);
    expect(Array.from(copied)).toEqual([1, 2]);
    expect(() => asFloat32(buf.subarray(0, 3))).toThrow('not a whole number of float32');
  });

  it('rejects garbage with a reason', () => {
    expect(() => decode(new Uint8Array([1, 2, 3]))).toThrow('not a zeroring frame');
    expect(() => decode(new Uint8Array([0x5a, 0, 200, 0, 1]))).toThrow('header length 200 exceeds frame');
  });
});

describe('shared-memory references and credits', () => {
  it('a data message can name the slot that holds its payload instead of carrying it', () => {
    const d = decode(encodeShm(h, 5, 1 << 20));
    expect(d.h).toEqual(h);
    expect(d.shm).toEqual({ slot: 5, bytes: 1 << 20 });
    expect(d.payload).toBeNull();
    expect(d.separate).toBe(false);
    // An ordinary message names no slot.
    expect(decode(encode(h, new Uint8Array(8))[0]!).shm).toBeNull();
  });

  it('a credit returns a set of slots, as a bit mask', () => {
    expect(decode(encodeCredit(0b1010_0001)).h).toEqual({ t: MsgType.Credit, slots: 0b1010_0001 });
    expect(decode(encodeCredit(1 << 31)).h).toEqual({ t: MsgType.Credit, slots: 2 ** 31 });
  });

  it('rejects truncated references and credits', () => {
    const ref = encodeShm(h, 1, 8);
    expect(() => decode(ref.subarray(0, ref.length - 1))).toThrow('malformed shared-memory reference');
    const credit = encodeCredit(1);
    expect(() => decode(credit.subarray(0, 6))).toThrow('credit frame of 6 bytes');
  });
});

describe('binary data header', () => {
  it('round-trips every field, large sequence numbers and counts included', () => {
    for (const hh of [
      h,
      { ...h, q: 2 ** 40 + 3, n: 2 ** 33 + 1, c: 'broadcast', o: '', r: 3, s: 0, k: 4_000_000 },
      { ...h, c: 'barrier', o: '', n: 0, r: -1 },
    ] as DataHeader[]) {
      const frames = encode(hh, new Uint8Array(8));
      expect(decode(frames[0]!).h).toEqual(hh);
    }
  });

  it('names a code it does not know (for the mismatch error) and refuses to encode an unknown name', () => {
    const f = encode(h, new Uint8Array(0))[0]!;
    f[5] = 77;
    expect((decode(f).h as DataHeader).c).toBe('?77');
    expect(() => encode({ ...h, o: 'prod' }, new Uint8Array(0))).toThrow("cannot encode reduce op 'prod'");
  });

  it('rejects a binary header of the wrong size', () => {
    const f = encode(h, new Uint8Array(0))[0]!;
    f[2] = 8;
    expect(() => decode(f)).toThrow('expected a 32-byte data header');
  });
});
