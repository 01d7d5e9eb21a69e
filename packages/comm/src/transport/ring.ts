// The ring transport: each rank keeps an authenticated connection from its previous rank (data
// arrives) and one to its next (data leaves). It knows nothing of collectives: it frames headers
// and payloads, tells when sends have reached the kernel, watches the neighbours' liveness and
// reports a lost one. Rank r dials r-1, so bulk data flows server-side and is never masked.
// Setup is ring-setup.ts; the sending side is outbox.ts; same-host payloads use shm.ts.
// Details: docs/internals.md#ring-transport
import { CloseCode, type Conn } from './conn.ts';
import type { Listener } from './listener.ts';
import { Outbox } from './outbox.ts';
import { connectRing, type RingLinks, type RingOptions } from './ring-setup.ts';
import type { ShmSegment } from './shm.ts';
import { decode, encode, encodeCredit, MsgType, type DataHeader, type Header, type ShmRef } from './wire.ts';

export { PEER_MAX_PAYLOAD, type RingOptions } from './ring-setup.ts';

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

export class RingTransport {
  private handlers: RingHandlers | undefined;
  private awaitingPayload: DataHeader | null = null;
  private lostReported = { prev: false, next: false };
  private readonly prevConn: Conn;
  private readonly nextConn: Conn;
  private readonly listener: Listener;
  private readonly shmIn: ShmSegment | null;
  private readonly shmOut: ShmSegment | null;
  private readonly outbox: Outbox;
  /**
   * Slots of the previous rank's segment read since the last credit (sent once the current
   * socket read is processed).
   */
  private creditMask = 0;
  /** Whether the links keep the process alive; changed at most twice per collective, so only on change. */
  private ref: boolean | null = null;
  /** Payload bytes of the data messages sent to the next rank so far (headers not counted). */
  payloadBytesSent = 0;

  private constructor(
    readonly rank: number,
    readonly worldSize: number,
    links: RingLinks,
  ) {
    this.prevConn = links.prevConn;
    this.nextConn = links.nextConn;
    this.listener = links.listener;
    this.shmIn = links.shmIn;
    this.shmOut = links.shmOut;
    this.outbox = new Outbox(this.nextConn, this.shmOut, (what) => this.protocolError('next', what));
  }

  /** Publishes our address, dials the previous rank and waits for the next one to dial us. */
  static async establish(o: RingOptions): Promise<RingTransport> {
    return new RingTransport(o.rank, o.worldSize, await connectRing(o));
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

  /** Starts delivering messages; anything that arrived during setup is replayed first. */
  attach(h: RingHandlers): void {
    this.handlers = h;
    this.prevConn.setHandler((raw) => this.onPrevMessage(raw));
    this.prevConn.readFramesInto({
      begin: (bytes) => (this.awaitingPayload && h.payloadTarget ? h.payloadTarget(this.awaitingPayload, bytes) : null),
      end: (data) => this.onPrevMessage(data),
    });
    this.nextConn.setHandler((raw) => this.onNextMessage(raw));
    const closed = (code: number, reason: string) => `connection closed (code ${code}${reason ? `: ${reason}` : ''})`;
    this.prevConn.onClose((code, reason) => this.lost('prev', closed(code, reason), code === CloseCode.normal));
    this.nextConn.onClose((code, reason) => this.lost('next', closed(code, reason), code === CloseCode.normal));
  }

  /**
   * Sends one data message to the next rank. The payload bytes are read as they are, now or
   * later: `released` is called once nothing reads them any more (not at all if the link is lost).
   */
  send(h: DataHeader, payload: Uint8Array, released?: () => void): void {
    this.payloadBytesSent += payload.byteLength;
    this.outbox.send(h, payload, released);
  }

  /** Whatever `fn` sends to the next rank leaves in one write (see Conn.batch). */
  batch<T>(fn: () => T): T {
    return this.outbox.batch(fn);
  }

  /** Resolves once every payload sent by reference so far has been written to the kernel (or failed). */
  flushed(): Promise<void> | null {
    return this.outbox.flushed();
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
    if (!seg || !(ref.slot < seg.slots) || ref.bytes > seg.slotBytes) {
      const what = `shared-memory reference (slot ${ref.slot}, ${ref.bytes} bytes) outside the agreed segment`;
      return this.protocolError('prev', what);
    }
    const into = this.handlers!.payloadTarget?.(h, ref.bytes) ?? Buffer.allocUnsafe(ref.bytes);
    if (into.byteLength !== ref.bytes) {
      throw new Error(`payload target of ${into.byteLength} bytes for a ${ref.bytes}-byte payload`);
    }
    if (!seg.read(ref.slot, into)) {
      return this.protocolError('prev', `shared-memory slot ${ref.slot} is shorter than ${ref.bytes} bytes`);
    }
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
    if (d.h.t === MsgType.Data)
      return this.protocolError('next', 'data message from the next rank (data flows from prev to next)');
    if (d.h.t === MsgType.Credit) return this.outbox.onCredit(d.h.slots);
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
    if (side === 'next') this.outbox.lost();
    this.handlers?.onLost(side, side === 'prev' ? this.prevRank : this.nextRank, reason, clean);
  }
}
