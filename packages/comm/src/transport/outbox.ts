// What leaves for the next rank, in order. Large payloads on a shared-memory link take a slot
// of the segment we write (shm.ts) and wait for a free one when all are taken, and everything
// sent after them waits behind, so the receiver sees messages in the order they were sent. A
// credit from the next rank frees the slots it has read.
//
// It also counts the payloads that the socket (or the wait for a slot) still reads by
// reference, so that a collective can hand the user's buffer back only once nothing reads it.
import type { Conn } from './conn.ts';
import type { ShmSegment } from './shm.ts';
import { encode, encodeShm, INLINE_MAX_BYTES, type DataHeader } from './wire.ts';

/** A message waiting for a free shared-memory slot (or behind one that is). */
interface QueuedSend {
  h: DataHeader;
  payload: Uint8Array;
  viaShm: boolean;
  released: (() => void) | undefined;
}

export class Outbox {
  private inflight = 0;
  private flushWaiters: (() => void)[] = [];
  /** Free slots of the segment we write for the next rank, and sends waiting for one, in order. */
  private readonly freeSlots: number[] = [];
  private readonly slotBusy: boolean[] = [];
  private readonly waiting: QueuedSend[] = [];

  constructor(
    private readonly conn: Conn,
    private readonly shm: ShmSegment | null,
    /** The next rank broke the protocol: the owner closes the link. */
    private readonly protocolError: (what: string) => void,
  ) {
    for (let s = (shm?.slots ?? 0) - 1; s >= 0; s--) {
      this.freeSlots.push(s);
      this.slotBusy[s] = false;
    }
  }

  /** See RingTransport.send. */
  send(h: DataHeader, payload: Uint8Array, released?: () => void): void {
    const bytes = payload.byteLength;
    const viaShm = this.shm !== null && bytes > INLINE_MAX_BYTES && bytes <= this.shm.slotBytes;
    if (this.waiting.length > 0 || (viaShm && this.freeSlots.length === 0)) {
      // Behind a send that waits for a slot: keep the order. The payload is read later.
      this.inflight++;
      this.waiting.push({ h, payload, viaShm, released });
      return;
    }
    if (viaShm) this.sendViaShm(h, payload, released);
    else this.sendViaSocket(h, payload, released);
  }

  /** The next rank has read these slots: send what waited for one. */
  onCredit(mask: number): void {
    const slots = this.shm?.slots ?? 0;
    for (let slot = 0; slot < 32; slot++) {
      if (!(mask & (1 << slot))) continue;
      if (!(slot < slots) || !this.slotBusy[slot]) {
        return this.protocolError(`credit for shared-memory slot ${slot}, which is not in use`);
      }
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

  /** Whatever `fn` sends leaves in one write (see Conn.batch). */
  batch<T>(fn: () => T): T {
    return this.conn.batch(fn);
  }

  /** Resolves once every payload sent by reference so far has been written to the kernel (or failed). */
  flushed(): Promise<void> | null {
    if (this.inflight === 0) return null;
    return new Promise((r) => this.flushWaiters.push(r));
  }

  /** The link is lost: writes to a dead socket never call back, so release anyone waiting for a flush. */
  lost(): void {
    if (this.inflight === 0) return;
    this.inflight = 0;
    this.waiting.length = 0;
    this.wake();
  }

  /** Copies the payload into a free slot (synchronously: the caller's buffer is free again) and sends its header. */
  private sendViaShm(h: DataHeader, payload: Uint8Array, released: (() => void) | undefined): void {
    const slot = this.freeSlots.pop()!;
    this.slotBusy[slot] = true;
    this.shm!.write(slot, payload);
    this.conn.send(encodeShm(h, slot, payload.byteLength));
    released?.();
  }

  private sendViaSocket(h: DataHeader, payload: Uint8Array, released: (() => void) | undefined): void {
    const frames = encode(h, payload);
    if (frames.length === 1) {
      // Inline: the payload was copied into the frame, nobody needs to know when it leaves.
      this.conn.send(frames[0]!);
      released?.();
      return;
    }
    this.inflight++;
    this.conn.send(frames[0]!);
    this.conn.send(frames[1]!, (err) => {
      if (!err) released?.();
      this.sent();
    });
  }

  /** One payload sent by reference has left: wake the flush waiters when it was the last. */
  private sent(): void {
    if (--this.inflight === 0) this.wake();
  }

  private wake(): void {
    const w = this.flushWaiters;
    this.flushWaiters = [];
    for (const f of w) f();
  }
}
