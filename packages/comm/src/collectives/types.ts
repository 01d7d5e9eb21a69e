// What a collective algorithm sees of the world: its rank in the ring, a way to send a chunk
// to the next rank, and the chunks that arrive from the previous rank (in the order they were
// sent). Transport, tagging, ordering, timeouts and failures live in group/ and transport/;
// the files in this folder are only the algorithms (Gloo's split).
import { ZeroringError } from '../errors.ts';

export type ReduceOp = 'sum' | 'avg' | 'max' | 'min';
export const REDUCE_OPS: readonly ReduceOp[] = ['sum', 'avg', 'max', 'min'];

/**
 * The element type a collective puts on the wire. The 16-bit ones carry float32 data rounded to
 * bfloat16 or float16 (half the bytes; half.ts), so a chunk's payload is a Uint16Array.
 */
export type WireDtype = 'float32' | 'bfloat16' | 'float16';
export const WIRE_DTYPES: readonly WireDtype[] = ['float32', 'bfloat16', 'float16'];

/** A chunk's payload as a collective sees it: float32 elements, or the 16-bit encodings. */
export type Payload = Float32Array | Uint16Array;

export function elemBytes(dtype: string): number {
  return dtype === 'float32' ? 4 : 2;
}

export type CollectiveKind = 'allReduce' | 'reduceScatter' | 'allGather' | 'broadcast' | 'barrier';

export interface RingPort {
  readonly rank: number;
  readonly worldSize: number;
  /** Elements per chunk: the pipelining grain. */
  readonly chunkElems: number;
  /** send() copies payloads up to this many bytes; larger ones are read by the socket later. */
  readonly inlineMaxBytes: number;
  /**
   * Sends a chunk to the next rank. The bytes are not copied: they must stay unchanged until
   * the collective completes (the process group waits for the socket to take them).
   */
  send(step: number, chunk: number, data: Payload): void;
  /**
   * For a collective whose work runs on other groups (Collective.delegated): that work is over,
   * so the call may complete; or it failed, which fails the group (and the job) with `e`.
   */
  settled(c: Collective<Payload>, e?: unknown): void;
}

/** A collective over chunks of type T (Float32Array for float32 calls, Uint16Array for 16-bit ones). */
export interface Collective<T extends Payload = Float32Array> {
  /** Sends what needs nothing from the previous rank. */
  start(): void;
  /**
   * One chunk from the previous rank. `data` belongs to the collective: it may reduce into it
   * and forward it.
   */
  onChunk(step: number, chunk: number, data: T): void;
  /**
   * Optional: where the payload of chunk (step, chunk) should be received, before it arrives —
   * a view of the collective's own output (onChunk then gets that very view), 'scratch' for a
   * reused buffer that onChunk consumes or forwards, or null for no preference. Called only
   * for messages whose tags match this call; `elems` is what the sender announced.
   */
  receiveInto?(step: number, chunk: number, elems: number): T | 'scratch' | null;
  /** Messages still expected from the previous rank; 0 means this rank's part is done. */
  readonly expecting: number;
  /**
   * Optional: true while part of the call runs on other groups' rings (the hierarchical
   * all-reduce). The call does not complete before it is false again (port.settled), and this
   * group's watchdog does not time it out meanwhile: the other groups' watchdogs judge that work.
   */
  readonly delegated?: boolean;
}

/** A message that does not fit the schedule: a bug or a corrupted peer, never silently used. */
export function scheduleError(what: string): ZeroringError {
  return new ZeroringError(`collective schedule violated: ${what}`);
}
