// The ProcessGroup of DESIGN.md: collectives over the ring, in issue order, with failures
// that reach every rank.
//
// Ordering: a call is numbered when it is issued and queued; calls run strictly one after
// the other, so DDP may fire one allReduce per bucket without awaiting the previous. Every
// message carries (sequence, kind, op, count, dtype, root), checked on receipt: a rank whose
// call differs from its previous rank's fails with CollectiveMismatchError naming both.
// Messages for a call this rank has not started yet wait in `early`.
//
// Failure: the first error (lost neighbour, mismatch, timeout, silent neighbour) is final.
// It rejects the running and queued calls, is sent as an abort message to both neighbours,
// who adopt it and pass it on, so every rank rejects with the same typed error; then the
// links are closed so that the process can exit.
//
// Clean leave: a neighbour that called destroy() had finished all its calls and sent all its
// data before its bye (same stream, in order), and its link closes only once we have read
// all of it (the WebSocket closing handshake, see destroy()). So its leave is no failure by
// itself: data already received still serves the calls it belongs to. It becomes a
// PeerLostError the moment a call needs that neighbour: a call that still expects data from a
// departed previous rank (checked when it leaves and when a call starts, after the messages
// that came early are delivered), or a call that sends to a departed next rank.
//
// Liveness: a timer pings both neighbours, fails a neighbour silent for longer than the
// timeout, and fails a collective that made no progress for that long; it runs, whatever
// left, for as long as any call is pending. A timer can only fire after a long synchronous
// stretch of our own; the verdict is therefore re-checked after the event loop has read the
// sockets (setImmediate), so our own stall is never blamed on a peer.
import { resolveOptions, type InitOptions, type ResolvedOptions } from './env.ts';
import { AllGather } from './collectives/allgather.ts';
import { AllReduce } from './collectives/allreduce.ts';
import { GatherAllReduce } from './collectives/allreduce-gather.ts';
import { Barrier } from './collectives/barrier.ts';
import { Broadcast } from './collectives/broadcast.ts';
import { ReduceScatter } from './collectives/reducescatter.ts';
import { REDUCE_OPS, type Collective, type CollectiveKind, type ReduceOp, type RingPort } from './collectives/types.ts';
import {
  CollectiveMismatchError,
  CommTimeoutError,
  ConfigError,
  PeerLostError,
  ZeroringError,
  describeCall,
  fromWire,
  toWire,
  type CollectiveCall,
} from './errors.ts';
import { getLogger, type Logger } from '@zeroring/core';
import { rendezvous } from './rendezvous.ts';
import type { StoreClient } from './store/client.ts';
import type { StoreServer } from './store/server.ts';
import { ScratchPool } from './scratch-pool.ts';
import { CloseCode } from './transport/conn.ts';
import type { RingTransport, Side } from './transport/ring.ts';
import { asFloat32, bytesOf, INLINE_MAX_BYTES, MsgType, type DataHeader, type Header } from './transport/wire.ts';
import { reportUncaughtZeroringErrors } from './uncaught.ts';

export interface ReduceOptions {
  op?: ReduceOp;
}

interface Op {
  call: CollectiveCall & { kind: CollectiveKind };
  make: (port: RingPort) => Collective;
  resolve: () => void;
  reject: (e: Error) => void;
  coll?: Collective;
  completing?: boolean;
  lastProgress: number;
}

/** Scratch buffers kept for reuse (beyond those carved from the SIMD arena): a few chunks in flight at the default chunk size. */
const SCRATCH_POOL_BYTES = 32 * 1024 * 1024;

export async function initProcessGroup(opts: InitOptions = {}): Promise<ProcessGroup> {
  reportUncaughtZeroringErrors();
  const o = resolveOptions(opts);
  const log = getLogger({ component: 'comm', ...(process.env.RANK === undefined ? { rank: o.rank } : {}) });
  if (o.worldSize === 1) return new ProcessGroup(o, log, null);
  const rdzv = await rendezvous(o, log);
  log.debug({ worldSize: o.worldSize }, 'process group ready');
  return new ProcessGroup(o, log, rdzv.ring, rdzv.store, rdzv.storeServer);
}

export class ProcessGroup {
  readonly rank: number;
  readonly worldSize: number;
  readonly timeoutMs: number;
  private readonly smallAllReduceBytes: number;

  private nextSeq = 0;
  private nextRunSeq = 0;
  private readonly queue: Op[] = [];
  private running: Op | null = null;
  /** Messages for calls not started yet; `scratch`: the payload is a pool buffer (back to the pool after use). */
  private early: { h: DataHeader; payload: Uint8Array; scratch: boolean }[] = [];
  private failure: ZeroringError | null = null;
  /** Neighbours that left cleanly (destroy()): why a call that needs them will fail. */
  private readonly left: { prev: PeerLostError | null; next: PeerLostError | null } = { prev: null, next: null };
  private destroyed = false;
  private readonly timer: NodeJS.Timeout | undefined;
  private readonly port: RingPort;
  private readonly scratch = new ScratchPool(SCRATCH_POOL_BYTES);
  /**
   * The scratch buffer handed to the transport for the payload arriving now (one at a time per
   * link), kept while it is delivered; and whether the collective forwarded it meanwhile (it
   * then returns to the pool once the transport is done reading it).
   */
  private scratchTaken: Uint8Array | null = null;
  private forwarded = false;

  /** @internal use initProcessGroup() */
  constructor(
    o: ResolvedOptions,
    private readonly log: Logger,
    private readonly ring: RingTransport | null,
    /** The rendezvous store, still connected (for tools that coordinate through it). */
    readonly store: StoreClient | null = null,
    private readonly storeServer: StoreServer | null = null,
  ) {
    this.rank = o.rank;
    this.worldSize = o.worldSize;
    this.timeoutMs = o.timeoutMs;
    this.smallAllReduceBytes = o.smallAllReduceBytes;
    const self = this;
    this.port = {
      rank: o.rank,
      worldSize: o.worldSize,
      chunkElems: o.chunkBytes / 4,
      inlineMaxBytes: INLINE_MAX_BYTES,
      send(step, chunk, data) {
        self.sendChunk(step, chunk, data);
      },
    };
    if (ring) {
      ring.attach({
        payloadTarget: (h, bytes) => this.payloadTarget(h, bytes),
        onData: (h, p) => this.onData(h, p),
        onControl: (h, side) => this.onControl(h, side),
        onLost: (side, rank, reason, clean) => this.onLost(side, rank, reason, clean),
      });
      const every = Math.max(50, Math.min(1000, Math.floor(o.timeoutMs / 4)));
      this.timer = setInterval(() => this.tick(), every);
      this.timer.unref();
      // Idle: let the process exit if the user forgets destroy(); ref'd while a call runs.
      ring.setRef(false);
      store?.setRef(false);
      storeServer?.setRef(false);
    }
  }

  /**
   * How large payloads travel on each ring link: 'shm' (shared memory, both ends on this
   * machine) or 'tcp'; null with world size 1.
   */
  get links(): { prev: 'shm' | 'tcp'; next: 'shm' | 'tcp' } | null {
    return this.ring?.links ?? null;
  }

  /** In place: buf becomes the elementwise reduction of every rank's buf. Any length. */
  async allReduce(buf: Float32Array, opts: ReduceOptions = {}): Promise<void> {
    const op = checkOp(opts.op);
    checkF32('allReduce', 'buf', buf);
    if (this.worldSize === 1) return this.local(() => undefined);
    // Latency-bound sizes take the gather algorithm (fewer hops), the rest the bandwidth-optimal ring.
    const small = this.smallAllReduceBytes > 0 && buf.byteLength <= this.smallAllReduceBytes;
    return this.enqueue({ kind: 'allReduce', op, count: buf.length, dtype: 'float32' }, (p) => (small ? new GatherAllReduce(p, buf, op) : new AllReduce(p, buf, op)));
  }

  /** output = this rank's segment of the reduction of every rank's input; input.length = worldSize * output.length. */
  async reduceScatter(input: Float32Array, output: Float32Array, opts: ReduceOptions = {}): Promise<void> {
    const op = checkOp(opts.op);
    checkF32('reduceScatter', 'input', input);
    checkF32('reduceScatter', 'output', output);
    if (input.length !== this.worldSize * output.length)
      return Promise.reject(new ConfigError(`reduceScatter: input.length=${input.length}, expected worldSize * output.length = ${this.worldSize} * ${output.length} = ${this.worldSize * output.length}`));
    if (this.worldSize === 1) return this.local(() => output.set(input));
    return this.enqueue({ kind: 'reduceScatter', op, count: input.length, dtype: 'float32' }, (p) => new ReduceScatter(p, input, output, op));
  }

  /** output = every rank's input concatenated in rank order; output.length = worldSize * input.length. */
  async allGather(input: Float32Array, output: Float32Array): Promise<void> {
    checkF32('allGather', 'input', input);
    checkF32('allGather', 'output', output);
    if (output.length !== this.worldSize * input.length)
      return Promise.reject(new ConfigError(`allGather: output.length=${output.length}, expected worldSize * input.length = ${this.worldSize} * ${input.length} = ${this.worldSize * input.length}`));
    if (this.worldSize === 1) return this.local(() => output.set(input));
    return this.enqueue({ kind: 'allGather', count: output.length, dtype: 'float32' }, (p) => new AllGather(p, input, output));
  }

  /** buf on every rank becomes root's buf. */
  async broadcast(buf: Float32Array, root: number): Promise<void> {
    checkF32('broadcast', 'buf', buf);
    if (!Number.isInteger(root) || root < 0 || root >= this.worldSize)
      return Promise.reject(new ConfigError(`broadcast: root=${root} is out of range, expected 0..${this.worldSize - 1}`));
    if (this.worldSize === 1) return this.local(() => undefined);
    return this.enqueue({ kind: 'broadcast', count: buf.length, dtype: 'float32', root }, (p) => new Broadcast(p, buf, root));
  }

  /** Resolves once every rank has entered the barrier. */
  async barrier(): Promise<void> {
    if (this.worldSize === 1) return this.local(() => undefined);
    return this.enqueue({ kind: 'barrier', count: 0, dtype: 'float32' }, (p) => new Barrier(p));
  }

  /**
   * Closes every connection (and the store, on the rank hosting it) so the process can exit.
   * Calls still pending are rejected. Safe to call more than once, and after a failure.
   */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    clearInterval(this.timer);
    const pending = [...(this.running ? [this.running] : []), ...this.queue.splice(0)];
    this.running = null;
    for (const op of pending) op.reject(new ZeroringError(`process group destroyed on rank ${this.rank} while ${describeCall(op.call)} was pending`));
    if (this.ring) {
      if (this.failure) {
        await this.ring.close(CloseCode.abort, 'abort');
      } else {
        // Graceful: the bye and the close frame follow our last chunks, and the links stay open
        // until each neighbour's ws has answered the close, i.e. has read everything we sent.
        // Only a neighbour that stays silent for the whole timeout is cut off.
        this.ring.sendControl({ t: MsgType.Bye, from: this.rank });
        await this.ring.close(CloseCode.normal, 'destroy', this.timeoutMs);
      }
    }
    this.store?.close();
    await this.storeServer?.close();
  }

  private local(f: () => void): Promise<void> {
    if (this.destroyed) return Promise.reject(new ZeroringError('process group destroyed'));
    f();
    return Promise.resolve();
  }

  private enqueue(call: Omit<CollectiveCall, 'seq'> & { kind: CollectiveKind }, make: (p: RingPort) => Collective): Promise<void> {
    if (this.destroyed) return Promise.reject(new ZeroringError(`process group destroyed on rank ${this.rank}; cannot run ${call.kind}`));
    if (this.failure) return Promise.reject(this.failure);
    const full = { ...call, seq: this.nextSeq++, op: call.op ?? '' };
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ call: full, make, resolve, reject, lastProgress: Date.now() });
      this.pump();
    });
  }

  private pump(): void {
    while (!this.running && !this.failure && this.queue.length > 0) {
      const op = this.queue.shift()!;
      this.running = op;
      this.nextRunSeq = op.call.seq + 1;
      op.lastProgress = Date.now();
      this.ring!.setRef(true);
      try {
        op.coll = op.make(this.port);
        // A call's first sends (and the forwards of what arrived early) come in a burst: one write.
        this.ring!.batch(() => {
          op.coll!.start();
          const mine = this.early.length ? this.early.filter((m) => m.h.q === op.call.seq) : [];
          if (mine.length) this.early = this.early.filter((m) => m.h.q !== op.call.seq);
          for (const m of mine) {
            if (this.running !== op) break;
            this.deliverOwned(op, m.h, m.payload, m.scratch ? m.payload : null);
          }
        });
        // Whatever the previous rank sent before leaving has now been delivered.
        if (this.running === op && this.left.prev && op.coll.expecting > 0) throw this.lostFor(op, 'prev');
      } catch (e) {
        this.fail(asZeroring(e));
        return;
      }
      if (this.running === op) this.maybeComplete(op);
    }
    if (!this.running) this.ring?.setRef(false);
  }

  private sendChunk(step: number, chunk: number, data: Float32Array): void {
    const op = this.running!;
    const c = op.call;
    // Thrown into the collective's start()/onChunk(), whose callers fail the group with it.
    if (this.left.next) throw this.lostFor(op, 'next');
    const scratch = this.scratchTaken;
    // Scratch buffers may share one ArrayBuffer (the SIMD arena): compare the bytes' place.
    const ofScratch = scratch !== null && data.buffer === scratch.buffer && data.byteOffset >= scratch.byteOffset && data.byteOffset < scratch.byteOffset + scratch.byteLength;
    if (ofScratch) this.forwarded = true;
    const released = ofScratch ? () => this.scratch.release(scratch) : undefined;
    this.ring!.send({ t: MsgType.Data, q: c.seq, c: c.kind, o: c.op ?? '', n: c.count, d: c.dtype, r: c.root ?? -1, s: step, k: chunk }, bytesOf(data), released);
  }

  /** The PeerLostError for a call that needs a neighbour that left cleanly. */
  private lostFor(op: Op, side: Side): PeerLostError {
    const gone = this.left[side]!;
    return new PeerLostError(gone.rank, describeCall(op.call), side === 'prev' ? 'it called destroy() before sending this call\'s data' : 'it called destroy() before this call', this.rank);
  }

  /**
   * Where a large payload goes, before it arrives. For the running call, where the collective
   * says (Collective.receiveInto), only if the message's tags match the call exactly; for a
   * call not started yet (a neighbour ahead of us: common when collectives are issued back to
   * back), a pooled buffer that waits in `early`. Anything else (mismatched, stale) is received
   * into a buffer of its own and judged by deliver() as usual.
   */
  private payloadTarget(h: DataHeader, bytes: number): Uint8Array | null {
    const op = this.running;
    if (this.failure || bytes % 4 !== 0) return null;
    if (this.isEarly(h)) return (this.scratchTaken = this.scratch.take(bytes));
    if (!op?.coll?.receiveInto || h.q !== op.call.seq || !sameCall(op.call, h)) return null;
    const into = op.coll.receiveInto(h.s, h.k, bytes / 4);
    if (into === 'scratch') return (this.scratchTaken = this.scratch.take(bytes));
    return into ? bytesOf(into) : null;
  }

  /** A message for a call this rank has not started yet. */
  private isEarly(h: DataHeader): boolean {
    const cur = this.running;
    return typeof h.q === 'number' && h.q >= (cur ? cur.call.seq + 1 : this.nextRunSeq);
  }

  private onData(h: DataHeader, payload: Uint8Array): void {
    if (this.failure || this.destroyed) return;
    const cur = this.running;
    const scratch = payload === this.scratchTaken ? payload : null;
    this.scratchTaken = null;
    if (cur && h.q === cur.call.seq) {
      try {
        this.deliverOwned(cur, h, payload, scratch);
      } catch (e) {
        return this.fail(asZeroring(e));
      }
      if (this.running === cur) this.maybeComplete(cur);
    } else if (this.isEarly(h)) {
      this.early.push({ h, payload, scratch: scratch !== null });
    } else {
      this.fail(new ZeroringError(`rank ${this.ring!.prevRank} sent data for collective #${h.q}, which rank ${this.rank} has already finished`));
    }
  }

  /** Delivers a payload that may be a pool buffer: it returns to the pool after use, unless the collective forwarded it. */
  private deliverOwned(op: Op, h: DataHeader, payload: Uint8Array, scratch: Uint8Array | null): void {
    // A payload may be arriving into another scratch buffer meanwhile (pump() delivers early
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
    if (!sameCall(c, h)) {
      const theirs: CollectiveCall = { seq: h.q, kind: String(h.c), count: h.n, dtype: String(h.d) };
      if (h.o) theirs.op = String(h.o);
      if (typeof h.r === 'number' && h.r >= 0) theirs.root = h.r;
      const mine: CollectiveCall = { seq: c.seq, kind: c.kind, count: c.count, dtype: c.dtype };
      if (c.op) mine.op = c.op;
      if (c.root !== undefined) mine.root = c.root;
      throw new CollectiveMismatchError(this.rank, mine, this.ring!.prevRank, theirs);
    }
    op.lastProgress = Date.now();
    op.coll!.onChunk(h.s, h.k, asFloat32(payload));
  }

  private maybeComplete(op: Op): void {
    if (op.completing || op.coll!.expecting > 0) return;
    op.completing = true;
    // The user's buffer may still be read by the socket: hand it back only once sent.
    const flushed = this.ring!.flushed();
    if (!flushed) return this.finish(op);
    flushed.then(() => this.finish(op));
  }

  private finish(op: Op): void {
    if (this.running !== op) return;
    this.running = null;
    op.resolve();
    this.pump();
  }

  private onControl(h: Header, side: Side): void {
    if (this.destroyed) return;
    if (h.t === MsgType.Abort) {
      this.fail(fromWire(h.e));
    } else if (h.t === MsgType.Bye) {
      const rank = side === 'prev' ? this.ring!.prevRank : this.ring!.nextRank;
      this.onLost(side, rank, 'it called destroy()', true);
    }
  }

  private onLost(side: Side, rank: number, reason: string, clean: boolean): void {
    // After a bye, the close that follows is no news (even if the socket is cut rather than closed).
    if (this.destroyed || this.failure || this.left[side]) return;
    const e = new PeerLostError(rank, this.running ? describeCall(this.running.call) : null, reason, this.rank);
    if (!clean) return this.fail(e);
    this.log.debug({ peer: rank, reason }, 'neighbour left');
    this.left[side] = e;
    // Everything the previous rank sent has arrived: a call still waiting for more never gets it.
    const op = this.running;
    if (side === 'prev' && op?.coll && op.coll.expecting > 0) this.fail(this.lostFor(op, 'prev'));
  }

  private tick(): void {
    if (!this.ring || this.failure || this.destroyed) return;
    this.ring.ping();
    const verdict = (): ZeroringError | null => {
      const now = Date.now();
      const sil = this.ring!.silence(now);
      for (const side of ['prev', 'next'] as const) {
        // A neighbour that left is silent for good; a call that needs it fails on its own.
        if (!this.left[side] && sil[side] > this.timeoutMs) {
          const rank = side === 'prev' ? this.ring!.prevRank : this.ring!.nextRank;
          return new PeerLostError(rank, this.running ? describeCall(this.running.call) : null, `silent for ${sil[side]} ms, no data or heartbeat (hung, stopped or cut off)`, this.rank);
        }
      }
      const op = this.running;
      if (op && now - op.lastProgress > this.timeoutMs) {
        return new CommTimeoutError(
          `${describeCall(op.call)} made no progress for ${now - op.lastProgress} ms on rank ${this.rank} (timeout ${this.timeoutMs} ms); ` +
            `waiting for rank ${this.ring!.prevRank} (did every rank issue this collective?)`,
          this.timeoutMs,
          this.rank,
        );
      }
      return null;
    };
    if (!verdict()) return;
    // Re-judge after the poll phase has read whatever arrived while we were busy.
    setImmediate(() => {
      if (this.failure || this.destroyed) return;
      const e = verdict();
      if (e) this.fail(e);
    });
  }

  private fail(e: ZeroringError): void {
    if (this.failure || this.destroyed) return;
    this.failure = e;
    this.log.error({ err: e.message, kind: e.name }, 'process group failed');
    const pending = [...(this.running ? [this.running] : []), ...this.queue.splice(0)];
    this.running = null;
    this.early = [];
    for (const op of pending) op.reject(e);
    this.broadcastFailure();
  }

  /** Tells both neighbours (they pass it on), then closes the links so the process can exit. */
  private broadcastFailure(): void {
    clearInterval(this.timer);
    if (!this.ring || !this.failure) return;
    this.ring.sendControl({ t: MsgType.Abort, e: toWire(this.failure), from: this.rank });
    void this.ring.close(CloseCode.abort, 'abort').catch(() => undefined);
  }
}

/** Whether a message's tags (other than its sequence number) are those of this call. */
function sameCall(c: Op['call'], h: DataHeader): boolean {
  return h.c === c.kind && h.o === c.op && h.n === c.count && h.d === c.dtype && h.r === (c.root ?? -1);
}

function checkOp(op: ReduceOp | undefined): ReduceOp {
  const o = op ?? 'sum';
  if (!REDUCE_OPS.includes(o)) throw new ConfigError(`reduce op '${String(op)}' is not supported, expected one of ${REDUCE_OPS.join(', ')}`);
  return o;
}

function checkF32(fn: string, name: string, a: unknown): void {
  if (!(a instanceof Float32Array)) throw new ConfigError(`${fn}: ${name} must be a Float32Array, got ${a === null ? 'null' : typeof a === 'object' ? (a as object).constructor?.name : typeof a}`);
}

function asZeroring(e: unknown): ZeroringError {
  return e instanceof ZeroringError ? e : new ZeroringError((e as Error)?.message ?? String(e), { cause: e });
}
