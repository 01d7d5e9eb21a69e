// The ring transport: each rank keeps two authenticated connections, one from its previous
// rank (data arrives there) and one to its next rank (data leaves there). It knows nothing of
// collectives: it frames headers and payloads, tells when sends have reached the kernel (so a
// collective can hand the user's buffer back only once nothing still reads it), watches the
// neighbours' liveness, and reports a lost neighbour to its owner.
//
// Direction: rank r dials its previous rank, so r-1 sends to r over the connection it
// *accepted*. Server-side frames are never masked, so the bulk data crosses without the
// client-masking pass at all; the dialling side (heartbeats, control messages) uses a zero
// mask, which ws also skips.
//
// Between ranks on the same machine, large payloads skip the socket: they go through a
// shared-memory segment per link (shm.ts) while their headers, and everything else, still go
// over the WebSocket link, in order.
import type { Logger } from '@zeroring/core';
import { CommTimeoutError, ConfigError, PeerLostError, ZeroringError } from '../errors.ts';
import type { AddressBook } from './address-book.ts';
import { CloseCode, Conn } from './conn.ts';
import { listen, type Listener } from './listener.ts';
import { negotiateShm, type ShmSegment } from './shm.ts';
import { decode, encode, encodeCredit, encodeShm, INLINE_MAX_BYTES, MsgType, type DataHeader, type Header, type ShmRef } from './wire.ts';

/** A chunk is at most this big (ring.ts and the collectives agree through plan.ts); frames are bounded just above. */
export const PEER_MAX_PAYLOAD = 16 * 1024 * 1024 + 64 * 1024;

export type Side = 'prev' | 'next';

export interface RingHandlers {
  /**
   * A payload of `bytes` for `h` is about to arrive as its own frame: where should it be
   * written? null: anywhere (onData then gets a buffer of the transport's own).
   */
  payloadTarget?(h: DataHeader, bytes: number): Uint8Array | null;
  onData(h: DataHeader, payload: Uint8Array): void;
  onControl(h: Header, side: Side): void;
  onLost(side: Side, rank: number, reason: string, clean: boolean): void;
}

export interface RingOptions {
  rank: number;
  worldSize: number;
  token: string;
  store: AddressBook;
  /** Store keys are namespaced by this (one rendezvous per restart). */
  prefix: string;
  bindHost: string;
  advertiseHost: string;
  timeoutMs: number;
  log: Logger;
  /** Rejects when the rendezvous is broken elsewhere (e.g. the store says so): stop waiting. */
  abort?: Promise<never>;
  /** Offer and accept shared-memory links with ranks on this machine (ZERORING_SHM). */
  sharedMemory: boolean;
  /** The collectives' chunk size: one shared-memory slot each. */
  chunkBytes: number;
}

/** A message to the next rank waiting for a free shared-memory slot (or behind one that is). */
interface QueuedSend {
  h: DataHeader;
  payload: Uint8Array;
  viaShm: boolean;
  released: (() => void) | undefined;
}

export class RingTransport {
  private inflight = 0;
  private flushWaiters: (() => void)[] = [];
  private handlers: RingHandlers | undefined;
  private awaitingPayload: DataHeader | null = null;
  private lostReported = { prev: false, next: false };
  /** Free slots of the segment we write for the next rank, and sends waiting for one, in order. */
  private readonly freeSlots: number[] = [];
  private readonly slotBusy: boolean[] = [];
  private readonly waiting: QueuedSend[] = [];
  /** Slots of the previous rank's segment read since the last credit (sent once the current socket read is processed). */
  private creditMask = 0;

  private constructor(
    readonly rank: number,
    readonly worldSize: number,
    private readonly prevConn: Conn,
    private readonly nextConn: Conn,
    private readonly listener: Listener,
    private readonly log: Logger,
    private readonly shmOut: ShmSegment | null,
    private readonly shmIn: ShmSegment | null,
  ) {
    for (let s = (shmOut?.slots ?? 0) - 1; s >= 0; s--) {
      this.freeSlots.push(s);
      this.slotBusy[s] = false;
    }
  }

  /** How each link carries large payloads. */
  get links(): { prev: 'shm' | 'tcp'; next: 'shm' | 'tcp' } {
    return { prev: this.shmIn ? 'shm' : 'tcp', next: this.shmOut ? 'shm' : 'tcp' };
  }

  get prevRank(): number {
    return (this.rank - 1 + this.worldSize) % this.worldSize;
  }
  get nextRank(): number {
    return (this.rank + 1) % this.worldSize;
  }

  /** Publishes our address, dials the previous rank and waits for the next one to dial us. */
  static async establish(o: RingOptions): Promise<RingTransport> {
    const { rank, worldSize, log } = o;
    const prev = (rank - 1 + worldSize) % worldSize;
    const next = (rank + 1) % worldSize;
    const deadline = Date.now() + o.timeoutMs;
    let nextConn: Conn | undefined;
    let gotNext!: (c: Conn) => void;
    const nextReady = new Promise<Conn>((r) => (gotNext = r));
    const listener = await listen({
      host: o.bindHost,
      port: 0,
      token: o.token,
      purpose: 'peer',
      maxPayload: PEER_MAX_PAYLOAD,
      authTimeoutMs: 10_000,
      log,
      onConn: (c) => {
        if (c.peerRank !== next) return c.fail(CloseCode.unexpectedPeer, `rank ${c.peerRank} dialled rank ${rank}, expected only rank ${next}`);
        if (nextConn && !nextConn.closed) return c.fail(CloseCode.duplicate, `a second connection claims rank ${next}`);
        nextConn = c;
        gotNext(c);
      },
    });
    const guard = <T>(p: Promise<T>): Promise<T> => (o.abort ? Promise.race([p, o.abort]) : p);
    let prevConn: Conn | undefined;
    let dial: Promise<Conn> | undefined;
    let timer: NodeJS.Timeout | undefined;
    try {
      await guard(o.store.set(`${o.prefix}addr/${rank}`, `${o.advertiseHost}:${listener.port}`));
      const addr = await guard(
        o.store.get(`${o.prefix}addr/${prev}`, Math.max(1, deadline - Date.now())).catch(async (e: unknown) => {
          if (e instanceof CommTimeoutError) throw await missingRanks(o, deadline);
          throw e;
        }),
      );
      const [host, port] = splitHostPort(String(addr));
      // The dialled link is the one data arrives on: it reads its frames itself (frame-reader.ts).
      dial = Conn.connect(host, port, rank, { token: o.token, purpose: 'peer', log, authTimeoutMs: Math.max(1000, deadline - Date.now()), maxPayload: PEER_MAX_PAYLOAD, readFrames: true });
      // It published its address, so it was up: a refused or broken dial means it is gone.
      prevConn = await guard(dial).catch((e: unknown) => {
        if (e instanceof ZeroringError) throw e;
        throw new PeerLostError(prev, 'rendezvous', `could not connect to it at ${addr}: ${(e as Error).message}`, rank);
      });
      const nc = await guard(
        Promise.race([
          nextReady,
          new Promise<never>((_, rej) => {
            timer = setTimeout(() => rej(new CommTimeoutError(`rendezvous: rank ${next} did not connect to rank ${rank} within ${o.timeoutMs} ms`, o.timeoutMs, rank)), Math.max(1, deadline - Date.now()));
          }),
        ]),
      );
      clearTimeout(timer);
      const shm = await negotiateShm({
        enabled: o.sharedMemory && o.chunkBytes > INLINE_MAX_BYTES,
        store: o.store,
        prefix: o.prefix,
        rank,
        prev,
        slotBytes: o.chunkBytes,
        timeoutMs: () => Math.max(1, deadline - Date.now()),
        guard,
        log,
      });
      return new RingTransport(rank, worldSize, prevConn, nc, listener, log, shm.out, shm.in);
    } catch (e) {
      clearTimeout(timer);
      // A dial still in flight is closed as soon as it completes.
      dial?.then((c) => c.terminate(), () => undefined);
      nextConn?.terminate();
      await listener.close();
      throw e;
    }
  }

  /** Starts delivering messages; anything that arrived during setup is replayed first. */
  attach(h: RingHandlers): void {
    this.handlers = h;
    this.prevConn.setHandler((raw) => this.onPrevMessage(raw));
    this.prevConn.readFramesInto({
      begin: (bytes) => (this.awaitingPayload && h.payloadTarget ? h.payloadTarget(this.awaitingPayload, bytes) : null),
      end: (data) => this.onPrevMessage(data),
    });
    this.nextConn.setHandler((raw) => this.onNextMessage(raw));
    this.prevConn.onClose((code, reason) => this.lost('prev', `connection closed (code ${code}${reason ? `: ${reason}` : ''})`, code === CloseCode.normal));
    this.nextConn.onClose((code, reason) => this.lost('next', `connection closed (code ${code}${reason ? `: ${reason}` : ''})`, code === CloseCode.normal));
  }

  /**
   * Sends one data message to the next rank. The payload bytes are read as they are, now or
   * later: `released` is called once nothing reads them any more (not at all if the link is lost).
   */
  send(h: DataHeader, payload: Uint8Array, released?: () => void): void {
    const viaShm = this.shmOut !== null && payload.byteLength > INLINE_MAX_BYTES && payload.byteLength <= this.shmOut.slotBytes;
    if (this.waiting.length > 0 || (viaShm && this.freeSlots.length === 0)) {
      // Behind a send that waits for a slot: keep the order. The payload is read later.
      this.inflight++;
      this.waiting.push({ h, payload, viaShm, released });
      return;
    }
    if (viaShm) this.sendViaShm(h, payload, released);
    else this.sendViaSocket(h, payload, released);
  }

  /** Copies the payload into a free slot (synchronously: the caller's buffer is free again) and sends its header. */
  private sendViaShm(h: DataHeader, payload: Uint8Array, released: (() => void) | undefined): void {
    const slot = this.freeSlots.pop()!;
    this.slotBusy[slot] = true;
    this.shmOut!.write(slot, payload);
    this.nextConn.send(encodeShm(h, slot, payload.byteLength));
    released?.();
  }

  private sendViaSocket(h: DataHeader, payload: Uint8Array, released: (() => void) | undefined): void {
    const frames = encode(h, payload);
    if (frames.length === 1) {
      // Inline: the payload was copied into the frame, nobody needs to know when it leaves.
      this.nextConn.send(frames[0]!);
      released?.();
      return;
    }
    this.inflight++;
    this.nextConn.send(frames[0]!);
    this.nextConn.send(frames[1]!, (err) => {
      if (!err) released?.();
      this.sent();
    });
  }

  /** One payload sent by reference has left: wake the flush waiters when it was the last. */
  private sent(): void {
    if (--this.inflight === 0) {
      const w = this.flushWaiters;
      this.flushWaiters = [];
      for (const f of w) f();
    }
  }

  /** The next rank has read these slots: send what waited for one. */
  private onCredit(mask: number): void {
    const slots = this.shmOut?.slots ?? 0;
    for (let slot = 0; slot < 32; slot++) {
      if (!(mask & (1 << slot))) continue;
      if (!(slot < slots) || !this.slotBusy[slot]) return this.protocolError('next', `credit for shared-memory slot ${slot}, which is not in use`);
      this.slotBusy[slot] = false;
      this.freeSlots.push(slot);
    }
    this.batch(() => {
      while (this.waiting.length > 0 && !(this.waiting[0]!.viaShm && this.freeSlots.length === 0)) {
        const q = this.waiting.shift()!;
        // The queue's reference ends here (a payload the socket sends by reference holds its own).
        if (q.viaShm) this.sendViaShm(q.h, q.payload, q.released);
        else this.sendViaSocket(q.h, q.payload, q.released);
        this.sent();
      }
    });
  }

  /** Whatever `fn` sends to the next rank leaves in one write (see Conn.batch). */
  batch<T>(fn: () => T): T {
    return this.nextConn.batch(fn);
  }

  /** Resolves once every payload sent by reference so far has been written to the kernel (or failed). */
  flushed(): Promise<void> | null {
    if (this.inflight === 0) return null;
    return new Promise((r) => this.flushWaiters.push(r));
  }

  /** Sends a control message (abort, bye) to one or both neighbours, where still open. */
  sendControl(h: Header, sides: Side[] = ['prev', 'next']): void {
    for (const side of sides) {
      const c = side === 'prev' ? this.prevConn : this.nextConn;
      if (!c.closed) for (const f of encode(h)) c.send(f);
    }
  }

  /** Time since we last heard anything from each neighbour. */
  silence(now: number): { prev: number; next: number } {
    return { prev: now - this.prevConn.lastSeen, next: now - this.nextConn.lastSeen };
  }

  ping(): void {
    for (const c of [this.prevConn, this.nextConn]) {
      if (!c.closed) {
        try {
          c.ws.ping();
        } catch {
          // closing; the close handler reports it
        }
      }
    }
  }

  /** Whether the links keep the process alive; changed at most twice per collective, so only on change. */
  private ref: boolean | null = null;

  setRef(on: boolean): void {
    if (this.ref === on) return;
    this.ref = on;
    this.prevConn.setRef(on);
    this.nextConn.setRef(on);
    this.listener.setRef(on);
  }

  /**
   * Closes both links and stops listening. The close frame follows anything already queued, and
   * the links stay open until each neighbour has answered it (so has received all we sent) or
   * graceMs passed: a clean leave never cuts off our last chunks.
   */
  async close(code: number = CloseCode.normal, reason = 'destroy', graceMs = 2000): Promise<void> {
    const conns = [this.prevConn, this.nextConn];
    const closed = conns.map((c) => (c.closed ? Promise.resolve() : new Promise<void>((r) => c.onClose(() => r()))));
    // Keep the process alive through the handshake even if the group was idle (unref'd).
    this.setRef(true);
    for (const c of conns) c.close(code, reason, graceMs);
    let t: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(closed), new Promise((r) => (t = setTimeout(r, graceMs)))]);
    clearTimeout(t);
    for (const c of conns) if (!c.closed) c.terminate();
    await this.listener.close();
    this.shmOut?.close();
    this.shmIn?.close();
  }

  private onPrevMessage(raw: Uint8Array): void {
    if (this.awaitingPayload) {
      const h = this.awaitingPayload;
      this.awaitingPayload = null;
      return this.handlers!.onData(h, raw);
    }
    let d;
    try {
      d = decode(raw);
    } catch (e) {
      return this.protocolError('prev', (e as Error).message);
    }
    if (d.h.t === MsgType.Data) {
      if (d.shm) this.readShm(d.h, d.shm);
      else if (d.separate) this.awaitingPayload = d.h;
      else this.handlers!.onData(d.h, d.payload!);
    } else if (d.h.t === MsgType.Credit) {
      this.protocolError('prev', 'credit from the previous rank (credits flow from next to prev)');
    } else this.handlers!.onControl(d.h, 'prev');
  }

  /** Reads a payload from the previous rank's segment into its destination and returns the slot at once. */
  private readShm(h: DataHeader, ref: ShmRef): void {
    const seg = this.shmIn;
    if (!seg || !(ref.slot < seg.slots) || ref.bytes > seg.slotBytes) return this.protocolError('prev', `shared-memory reference (slot ${ref.slot}, ${ref.bytes} bytes) outside the agreed segment`);
    const into = this.handlers!.payloadTarget?.(h, ref.bytes) ?? Buffer.allocUnsafe(ref.bytes);
    if (into.byteLength !== ref.bytes) throw new Error(`payload target of ${into.byteLength} bytes for a ${ref.bytes}-byte payload`);
    if (!seg.read(ref.slot, into)) return this.protocolError('prev', `shared-memory slot ${ref.slot} is shorter than ${ref.bytes} bytes`);
    // Slots read from one socket read go back in one credit, right after it (before any timer or I/O).
    if (this.creditMask === 0) queueMicrotask(() => this.sendCredit());
    this.creditMask |= 1 << ref.slot;
    this.handlers!.onData(h, into);
  }

  private sendCredit(): void {
    const mask = this.creditMask;
    this.creditMask = 0;
    if (!this.prevConn.closed) this.prevConn.send(encodeCredit(mask));
  }

  private onNextMessage(raw: Buffer): void {
    let d;
    try {
      d = decode(raw);
    } catch (e) {
      return this.protocolError('next', (e as Error).message);
    }
    if (d.h.t === MsgType.Data) return this.protocolError('next', 'data message from the next rank (data flows from prev to next)');
    if (d.h.t === MsgType.Credit) return this.onCredit(d.h.slots);
    this.handlers!.onControl(d.h, 'next');
  }

  private protocolError(side: Side, what: string): void {
    const c = side === 'prev' ? this.prevConn : this.nextConn;
    c.fail(CloseCode.malformed, what);
    this.lost(side, `protocol error: ${what}`, false);
  }

  private lost(side: Side, reason: string, clean: boolean): void {
    if (this.lostReported[side]) return;
    this.lostReported[side] = true;
    // Writes to a dead socket never call back: release anyone waiting for a flush.
    if (side === 'next' && this.inflight > 0) {
      this.inflight = 0;
      this.waiting.length = 0;
      const w = this.flushWaiters;
      this.flushWaiters = [];
      for (const f of w) f();
    }
    this.handlers?.onLost(side, side === 'prev' ? this.prevRank : this.nextRank, reason, clean);
  }
}

export function splitHostPort(addr: string): [string, number] {
  const i = addr.lastIndexOf(':');
  const host = addr.slice(0, i).replace(/^\[|\]$/g, '');
  const port = Number(addr.slice(i + 1));
  if (i < 0 || !Number.isInteger(port) || port <= 0 || port > 65535) throw new ConfigError(`bad peer address '${addr}' in the store, expected host:port`);
  return [host, port];
}

async function missingRanks(o: RingOptions, deadline: number): Promise<ZeroringError> {
  const missing: number[] = [];
  for (let r = 0; r < o.worldSize; r++) if (!(await o.store.check([`${o.prefix}addr/${r}`]).catch(() => false))) missing.push(r);
  return new CommTimeoutError(
    `rendezvous timed out after ${o.timeoutMs} ms on rank ${o.rank}: rank(s) ${missing.join(', ') || '?'} of WORLD_SIZE=${o.worldSize} never joined ` +
      `(store ${o.store.host}:${o.store.port}); started with the same MASTER_ADDR/MASTER_PORT/WORLD_SIZE?`,
    o.timeoutMs + Math.max(0, Date.now() - deadline),
    o.rank,
  );
}
