// Framing of ring messages, one binary WebSocket frame each:
//   'Z' | flags | u16 header length | header | zero pad to 8 bytes | inline payload
// Data messages (the hot path) carry a fixed 32-byte binary header, control messages msgpack.
// Large payloads follow as a frame of their own, so the receiver reads them straight into place
// (frame-reader.ts), or between same-host ranks go through shared-memory slots (shm.ts).
// Details: docs/internals.md#wire
import { Packr } from 'msgpackr';
import type { WireError } from '../errors.ts';

const MAGIC = 0x5a;
const FLAG_SEPARATE = 1;
const FLAG_BINARY = 2;
const FLAG_SHM = 4;
const FLAG_CREDIT = 8;
const CREDIT_FRAME_BYTES = 8;
const packr = new Packr({ useRecords: false });

/** Binary data header: t u8, kind u8, op u8, dtype u8, root i32, step u32, chunk u32, seq f64, count f64. */
const DATA_HEADER_BYTES = 32;
// 'send': a point-to-point message (group/p2p.ts); appended, so the codes before it stay as they were.
const KINDS = ['', 'allReduce', 'reduceScatter', 'allGather', 'broadcast', 'barrier', 'send'];
const OPS = ['', 'sum', 'avg', 'max', 'min'];
const DTYPES = ['', 'float32', 'bfloat16', 'float16'];

function codeOf(table: string[], what: string, v: string): number {
  const i = table.indexOf(v);
  if (i < 0) throw new Error(`cannot encode ${what} '${v}', expected one of ${table.filter(Boolean).join(', ')}`);
  return i;
}

/** A code from a peer that we do not know is still named, so a mismatch error can show it. */
function nameOf(table: string[], code: number): string {
  return table[code] ?? `?${code}`;
}

/** Payloads up to this size travel inline with their header. */
export const INLINE_MAX_BYTES = 64 * 1024;

export const MsgType = { Data: 0, Abort: 1, Bye: 2, Credit: 3, Ready: 4 } as const;

/** What every data message says about the collective it belongs to (checked on receipt). */
export interface DataHeader {
  t: typeof MsgType.Data;
  /** Sequence number of the collective in this process group. */
  q: number;
  /** Collective kind, reduce op, element count, dtype, root (broadcast). */
  c: string;
  o: string;
  n: number;
  d: string;
  r: number;
  /** Step and chunk within the collective's schedule. */
  s: number;
  k: number;
}

export interface AbortHeader {
  t: typeof MsgType.Abort;
  e: WireError;
  from: number;
}

export interface ByeHeader {
  t: typeof MsgType.Bye;
  from: number;
}

/** The receiver has read these shared-memory slots (bit i: slot i): the sender may reuse them. */
export interface CreditHeader {
  t: typeof MsgType.Credit;
  slots: number;
}

/**
 * Point to point: the receiver has posted its q-th recv from the sender, for n elements; the
 * sender's q-th send to it may go (group/p2p.ts).
 */
export interface ReadyHeader {
  t: typeof MsgType.Ready;
  q: number;
  n: number;
}

export type Header = DataHeader | AbortHeader | ByeHeader | CreditHeader | ReadyHeader;

/** Where a data message's payload waits in the sender's shared-memory segment. */
export interface ShmRef {
  slot: number;
  bytes: number;
}

export interface Decoded {
  h: Header;
  /** Inline payload bytes, or null when the payload follows as its own frame or is in shared memory. */
  payload: Uint8Array | null;
  separate: boolean;
  shm: ShmRef | null;
}

/** Returns the frames to send: one (inline) or two (header, then the payload bytes as is). */
export function encode(h: Header, payload?: Uint8Array): Uint8Array[] {
  const binary = h.t === MsgType.Data;
  const hb = binary ? null : packr.pack(h);
  const hlen = hb ? hb.length : DATA_HEADER_BYTES;
  const bodyOff = (4 + hlen + 7) & ~7;
  const separate = payload !== undefined && payload.byteLength > INLINE_MAX_BYTES;
  const inline = payload && !separate ? payload.byteLength : 0;
  const frame = Buffer.allocUnsafe(bodyOff + inline);
  frame[0] = MAGIC;
  frame[1] = (separate ? FLAG_SEPARATE : 0) | (binary ? FLAG_BINARY : 0);
  frame[2] = hlen & 0xff;
  frame[3] = hlen >>> 8;
  if (hb) frame.set(hb, 4);
  else writeDataHeader(frame, h as DataHeader);
  for (let i = 4 + hlen; i < bodyOff; i++) frame[i] = 0;
  if (inline) frame.set(payload!, bodyOff);
  return separate ? [frame, payload!] : [frame];
}

/** A data message whose payload the receiver reads from shared-memory slot `slot`. */
export function encodeShm(h: DataHeader, slot: number, bytes: number): Uint8Array {
  const ref = Buffer.allocUnsafe(8);
  ref.writeUInt32LE(slot, 0);
  ref.writeUInt32LE(bytes, 4);
  const [frame] = encode(h, ref) as [Buffer];
  frame[1] = frame[1]! | FLAG_SHM;
  return frame;
}

/** Returns the slots in `mask` (bit i: slot i, so at most 32 slots per segment). */
export function encodeCredit(mask: number): Uint8Array {
  const frame = Buffer.alloc(CREDIT_FRAME_BYTES);
  frame[0] = MAGIC;
  frame[1] = FLAG_CREDIT;
  frame.writeUInt32LE(mask >>> 0, 4);
  return frame;
}

function writeDataHeader(frame: Buffer, h: DataHeader): void {
  frame[4] = MsgType.Data;
  frame[5] = codeOf(KINDS, 'collective kind', h.c);
  frame[6] = codeOf(OPS, 'reduce op', h.o);
  frame[7] = codeOf(DTYPES, 'dtype', h.d);
  frame.writeInt32LE(h.r, 8);
  frame.writeUInt32LE(h.s, 12);
  frame.writeUInt32LE(h.k, 16);
  frame.writeDoubleLE(h.q, 20);
  frame.writeDoubleLE(h.n, 28);
}

function readDataHeader(buf: Uint8Array): DataHeader {
  const b = Buffer.from(buf.buffer, buf.byteOffset + 4, DATA_HEADER_BYTES);
  return {
    t: MsgType.Data,
    c: nameOf(KINDS, b[1]!),
    o: nameOf(OPS, b[2]!),
    d: nameOf(DTYPES, b[3]!),
    r: b.readInt32LE(4),
    s: b.readUInt32LE(8),
    k: b.readUInt32LE(12),
    q: b.readDoubleLE(16),
    n: b.readDoubleLE(24),
  };
}

/** Throws a descriptive Error on anything that is not a well-formed message. */
export function decode(buf: Uint8Array): Decoded {
  if (buf.length < 4 || buf[0] !== MAGIC)
    throw new Error(`not a zeroring frame (${buf.length} bytes, first byte ${buf[0]})`);
  if (buf[1] === FLAG_CREDIT) {
    if (buf.length !== CREDIT_FRAME_BYTES)
      throw new Error(`credit frame of ${buf.length} bytes, expected ${CREDIT_FRAME_BYTES}`);
    const slots = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).readUInt32LE(4);
    return { h: { t: MsgType.Credit, slots }, payload: null, separate: false, shm: null };
  }
  const hlen = buf[2]! | (buf[3]! << 8);
  const bodyOff = (4 + hlen + 7) & ~7;
  if (4 + hlen > buf.length) throw new Error(`header length ${hlen} exceeds frame of ${buf.length} bytes`);
  let h: Header;
  if (buf[1]! & FLAG_BINARY) {
    if (hlen !== DATA_HEADER_BYTES || buf[4] !== MsgType.Data)
      throw new Error(
        `binary header of ${hlen} bytes with type ${buf[4]}, expected a ${DATA_HEADER_BYTES}-byte data header`,
      );
    h = readDataHeader(buf);
  } else {
    h = packr.unpack(buf.subarray(4, 4 + hlen)) as Header;
    if (typeof h !== 'object' || h === null || typeof h.t !== 'number')
      throw new Error('header is not a message object');
  }
  const separate = (buf[1]! & FLAG_SEPARATE) !== 0;
  if (buf[1]! & FLAG_SHM) {
    if (h.t !== MsgType.Data || separate || buf.length !== bodyOff + 8)
      throw new Error('malformed shared-memory reference');
    const b = Buffer.from(buf.buffer, buf.byteOffset + bodyOff, 8);
    return { h, payload: null, separate: false, shm: { slot: b.readUInt32LE(0), bytes: b.readUInt32LE(4) } };
  }
  const payload = separate ? null : buf.subarray(Math.min(bodyOff, buf.length));
  return { h, payload, separate, shm: null };
}

/**
 * Views received bytes as float32 without copying when they are 4-byte aligned (separate
 * payload frames always are); otherwise copies them into a fresh aligned array.
 */
export function asFloat32(bytes: Uint8Array): Float32Array {
  if (bytes.byteLength % 4 !== 0)
    throw new Error(`payload of ${bytes.byteLength} bytes is not a whole number of float32`);
  if (bytes.byteOffset % 4 === 0) return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  const out = new Float32Array(bytes.byteLength / 4);
  new Uint8Array(out.buffer).set(bytes);
  return out;
}

/** asFloat32 for 16-bit elements (the encodings of a 16-bit wire; collectives/half.ts). */
export function asUint16(bytes: Uint8Array): Uint16Array {
  if (bytes.byteLength % 2 !== 0)
    throw new Error(`payload of ${bytes.byteLength} bytes is not a whole number of 16-bit elements`);
  if (bytes.byteOffset % 2 === 0) return new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
  const out = new Uint16Array(bytes.byteLength / 2);
  new Uint8Array(out.buffer).set(bytes);
  return out;
}

export function bytesOf(a: Float32Array | Uint16Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}
