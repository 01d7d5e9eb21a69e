// The data messages of a process group's calls, both ways. Outgoing, a collective's chunks get
// the tags of its call (sequence, kind, op, count, dtype, root). Incoming, a message goes to
// the running call if its tags are that call's (else CollectiveMismatchError names both
// sides), waits in `early` if it is for a call not started yet (a neighbour ahead of us:
// common when collectives are issued back to back), and fails the group if it is for a call
// already finished.
//
// Payloads that a collective consumes or forwards arrive in pooled scratch buffers: a buffer
// goes back to the pool once delivered, or, if the collective forwarded it, once the
// transport is done reading it.
import { elemBytes, type Payload, type RingPort } from '../collectives/types.ts';
import { CollectiveMismatchError, ZeroringError, type CollectiveCall } from '../errors.ts';
import { ScratchPool } from '../scratch-pool.ts';
import type { RingTransport } from '../transport/ring.ts';
import { asFloat32, asUint16, bytesOf, INLINE_MAX_BYTES, MsgType, type DataHeader } from '../transport/wire.ts';
import type { Op, OpQueue } from './op-queue.ts';
import type { GroupState } from './state.ts';

/**
 * Scratch buffers kept for reuse (beyond those carved from the SIMD arena): a few chunks in
 * flight at the default chunk size.
 */
const SCRATCH_POOL_BYTES = 32 * 1024 * 1024;

interface EarlyMessage {
  h: DataHeader;
  payload: Uint8Array;
  /** The payload is a pool buffer (back to the pool after use). */
  scratch: boolean;
}

export class DataPath {
  /** What a collective sees of the ring. */
  readonly port: RingPort;
  private early: EarlyMessage[] = [];
  private readonly scratch = new ScratchPool(SCRATCH_POOL_BYTES);
  /**
   * The scratch buffer handed to the transport for the payload arriving now (one at a time per
   * link), kept while it is delivered; and whether the collective forwarded it meanwhile (it
   * then returns to the pool once the transport is done reading it).
   */
  private scratchTaken: Uint8Array | null = null;
  private forwarded = false;

  constructor(
    chunkBytes: number,
    private readonly ring: RingTransport,
    private readonly state: GroupState,
    private readonly ops: OpQueue,
    private readonly fail: (e: ZeroringError) => void,
  ) {
    const self = this;
    this.port = {
      rank: state.rank,
      worldSize: ring.worldSize,
      chunkElems: chunkBytes / 4,
      inlineMaxBytes: INLINE_MAX_BYTES,
      send(step, chunk, data) {
        self.sendChunk(step, chunk, data);
      },
      settled(c, e) {
        const op = self.ops.running;
        if (e !== undefined) return self.fail(asZeroring(e));
        if (op?.coll === c && !self.state.failure) self.ops.maybeComplete(op);
      },
    };
  }

  /** Builds and starts op's collective and hands it what came early; false if that failed the group. */
  start(op: Op): boolean {
    try {
      const coll = (op.coll = op.make(this.port));
      // A call's first sends (and the forwards of what arrived early) come in a burst: one write.
      this.ring.batch(() => {
        coll.start();
        this.deliverEarly(op);
      });
      // Whatever the previous rank sent before leaving has now been delivered.
      if (this.ops.running === op && this.state.left.prev && coll.expecting > 0) {
        throw this.state.lostFor(op.call, 'prev');
      }
    } catch (e) {
      this.fail(asZeroring(e));
      return false;
    }
    return true;
  }

  /** Forgets the messages that came early (the group failed). */
  clear(): void {
    this.early = [];
  }

  /**
   * Where a large payload goes, before it arrives. For the running call, where the collective
   * says (Collective.receiveInto), only if the message's tags match the call exactly; for a
   * call not started yet, a pooled buffer that waits in `early`. Anything else (mismatched,
   * stale) is received into a buffer of its own and judged by deliver() as usual.
   */
  payloadTarget(h: DataHeader, bytes: number): Uint8Array | null {
    const op = this.ops.running;
    const size = elemBytes(h.d);
    if (this.state.failure || bytes % size !== 0) return null;
    if (this.ops.isAhead(h.q)) return (this.scratchTaken = this.scratch.take(bytes));
    if (!op?.coll?.receiveInto || h.q !== op.call.seq || !sameCall(op.call, h)) return null;
    const into = op.coll.receiveInto(h.s, h.k, bytes / size);
    if (into === 'scratch') return (this.scratchTaken = this.scratch.take(bytes));
    return into ? bytesOf(into) : null;
  }

  onData(h: DataHeader, payload: Uint8Array): void {
    if (this.state.failure || this.state.destroyed) return;
    const cur = this.ops.running;
    const scratch = payload === this.scratchTaken ? payload : null;
    this.scratchTaken = null;
    if (cur && h.q === cur.call.seq) {
      try {
        this.deliverOwned(cur, h, payload, scratch);
      } catch (e) {
        return this.fail(asZeroring(e));
      }
      if (this.ops.running === cur) this.ops.maybeComplete(cur);
    } else if (this.ops.isAhead(h.q)) {
      this.early.push({ h, payload, scratch: scratch !== null });
    } else {
      const stale = new ZeroringError(
        `rank ${this.ring.prevRank} sent data for collective #${h.q}, ` +
          `which rank ${this.state.rank} has already finished`,
      );
      this.fail(stale);
    }
  }

  private sendChunk(step: number, chunk: number, data: Payload): void {
    const op = this.ops.running!;
    const c = op.call;
    // Thrown into the collective's start()/onChunk(), whose callers fail the group with it.
    if (this.state.left.next) throw this.state.lostFor(c, 'next');
    const scratch = this.scratchTaken;
    // Scratch buffers may share one ArrayBuffer (the SIMD arena): compare the bytes' place.
    const ofScratch =
      scratch !== null &&
      data.buffer === scratch.buffer &&
      data.byteOffset >= scratch.byteOffset &&
      data.byteOffset < scratch.byteOffset + scratch.byteLength;
    if (ofScratch) this.forwarded = true;
    const released = ofScratch ? () => this.scratch.release(scratch) : undefined;
    const h: DataHeader = {
      t: MsgType.Data,
      q: c.seq,
      c: c.kind,
      o: c.op ?? '',
      n: c.count,
      d: c.dtype,
      r: c.root ?? -1,
      s: step,
      k: chunk,
    };
    this.ring.send(h, bytesOf(data), released);
  }

  private deliverEarly(op: Op): void {
    const mine = this.early.length ? this.early.filter((m) => m.h.q === op.call.seq) : [];
    if (mine.length) this.early = this.early.filter((m) => m.h.q !== op.call.seq);
    for (const m of mine) {
      if (this.ops.running !== op) break;
      this.deliverOwned(op, m.h, m.payload, m.scratch ? m.payload : null);
    }
  }

  /**
   * Delivers a payload that may be a pool buffer: it returns to the pool after use, unless the
   * collective forwarded it.
   */
  private deliverOwned(op: Op, h: DataHeader, payload: Uint8Array, scratch: Uint8Array | null): void {
    // A payload may be arriving into another scratch buffer meanwhile (start() delivers early
    // messages when a call starts, which can be in the middle of a socket read): keep its mark.
    const arriving = this.scratchTaken;
    this.scratchTaken = scratch;
    this.forwarded = false;
    try {
      this.deliver(op, h, payload);
    } finally {
      this.scratchTaken = arriving;
    }
    if (scratch && !this.forwarded) this.scratch.release(scratch);
  }

  private deliver(op: Op, h: DataHeader, payload: Uint8Array): void {
    const c = op.call;
    if (!sameCall(c, h)) throw this.mismatch(c, h);
    op.lastProgress = Date.now();
    // The tags matched, so the payload holds elements of this call's dtype.
    op.coll!.onChunk(h.s, h.k, c.dtype === 'float32' ? asFloat32(payload) : asUint16(payload));
  }

  /** This rank's call and the previous rank's, as the mismatch error shows them. */
  private mismatch(c: Op['call'], h: DataHeader): CollectiveMismatchError {
    const theirs: CollectiveCall = { seq: h.q, kind: String(h.c), count: h.n, dtype: String(h.d) };
    if (h.o) theirs.op = String(h.o);
    if (typeof h.r === 'number' && h.r >= 0) theirs.root = h.r;
    const mine: CollectiveCall = { seq: c.seq, kind: c.kind, count: c.count, dtype: c.dtype };
    if (c.op) mine.op = c.op;
    if (c.root !== undefined) mine.root = c.root;
    return new CollectiveMismatchError(this.state.rank, mine, this.ring.prevRank, theirs);
  }
}

/** Whether a message's tags (other than its sequence number) are those of this call. */
function sameCall(c: Op['call'], h: DataHeader): boolean {
  return h.c === c.kind && h.o === c.op && h.n === c.count && h.d === c.dtype && h.r === (c.root ?? -1);
}

function asZeroring(e: unknown): ZeroringError {
  return e instanceof ZeroringError ? e : new ZeroringError((e as Error)?.message ?? String(e), { cause: e });
}
