// Same-host payloads through shared memory, as NCCL's SHM transport and Open MPI's vader do:
// loopback TCP costs two kernel copies per byte and the TCP stack, and with 4 ranks on 2 cores
// the ring is CPU-bound. Each sender owns an unlinked /dev/shm segment per link, cut into slots;
// headers still go over the WebSocket link and name the slot, credits return it. A nonce proves
// the peer is on this host; anything else keeps that link on TCP.
// Details: docs/internals.md#shared-memory
import { randomBytes } from 'node:crypto';
import { closeSync, constants, existsSync, fstatSync, openSync, readSync, unlinkSync, writeSync } from 'node:fs';
import type { Logger } from '@zeroring/core';
import type { AddressBook } from './address-book.ts';

const SHM_DIR = '/dev/shm';
/** The segment starts with the nonce; slots follow, page-aligned. */
const HEADER_BYTES = 4096;
const NONCE_BYTES = 16;
/** Shared memory per link at most (Docker's default /dev/shm is 64 MiB for the whole container). */
const SEGMENT_MAX_BYTES = 32 * 1024 * 1024;
/** Credits name slots in a 32-bit mask (wire.ts); 8 keep a few chunks in flight. */
const MAX_SLOTS = 8;

export interface ShmOffer {
  path: string;
  nonce: string;
  slots: number;
  slotBytes: number;
}

/** One end of a link's segment: the sender writes slots, the receiver reads them. */
export class ShmSegment {
  private closed = false;

  constructor(
    readonly fd: number,
    readonly slots: number,
    readonly slotBytes: number,
  ) {}

  private offset(slot: number): number {
    return HEADER_BYTES + slot * this.slotBytes;
  }

  write(slot: number, data: Uint8Array): void {
    let done = 0;
    while (done < data.byteLength)
      done += writeSync(this.fd, data, done, data.byteLength - done, this.offset(slot) + done);
  }

  /** Fills `into` from the slot; false if the segment is shorter than that (a broken peer). */
  read(slot: number, into: Uint8Array): boolean {
    let done = 0;
    while (done < into.byteLength) {
      const n = readSync(this.fd, into, done, into.byteLength - done, this.offset(slot) + done);
      if (n === 0) return false;
      done += n;
    }
    return true;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.fd);
  }
}

/** Slots of one chunk each, as many as fit (2..8) in SEGMENT_MAX_BYTES. */
export function slotsFor(slotBytes: number): number {
  return Math.max(2, Math.min(MAX_SLOTS, Math.floor(SEGMENT_MAX_BYTES / slotBytes)));
}

/** Creates, fills (so a full tmpfs shows now, not mid-collective) and unlinks a sender's segment. */
export function createSegment(
  slots: number,
  slotBytes: number,
  log: Logger,
): { segment: ShmSegment; offer: ShmOffer } | null {
  if (process.platform !== 'linux' || !existsSync(SHM_DIR)) return null;
  const name = `${SHM_DIR}/zeroring-${process.pid}-${randomBytes(6).toString('hex')}`;
  let fd: number | undefined;
  try {
    fd = openSync(name, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL, 0o600);
    unlinkSync(name);
    const nonce = randomBytes(NONCE_BYTES);
    const segment = new ShmSegment(fd, slots, slotBytes);
    writeSync(fd, nonce, 0, NONCE_BYTES, 0);
    const zeros = new Uint8Array(slotBytes);
    for (let s = 0; s < slots; s++) segment.write(s, zeros);
    return {
      segment,
      offer: { path: `/proc/${process.pid}/fd/${fd}`, nonce: nonce.toString('hex'), slots, slotBytes },
    };
  } catch (e) {
    log.debug({ err: (e as Error).message }, 'no shared-memory segment, ring link stays on TCP');
    if (fd !== undefined) closeSync(fd);
    try {
      unlinkSync(name);
    } catch {
      // already unlinked
    }
    return null;
  }
}

/** Opens the previous rank's segment if it is on this machine; null otherwise. */
export function openSegment(raw: unknown, log: Logger): ShmSegment | null {
  const o = parseOffer(raw);
  if (!o) return null;
  let fd: number | undefined;
  try {
    // Non-blocking: on another machine the path may name anything, a FIFO included.
    fd = openSync(o.path, constants.O_RDONLY | constants.O_NONBLOCK);
    const st = fstatSync(fd);
    const nonce = Buffer.alloc(NONCE_BYTES);
    const expectedSize = HEADER_BYTES + o.slots * o.slotBytes;
    if (
      st.isFile() &&
      st.size === expectedSize &&
      readSync(fd, nonce, 0, NONCE_BYTES, 0) === NONCE_BYTES &&
      nonce.toString('hex') === o.nonce
    ) {
      return new ShmSegment(fd, o.slots, o.slotBytes);
    }
    closeSync(fd);
    return null;
  } catch (e) {
    log.debug({ err: (e as Error).message }, "previous rank's shared memory is not reachable, ring link stays on TCP");
    if (fd !== undefined) closeSync(fd);
    return null;
  }
}

function parseOffer(raw: unknown): ShmOffer | null {
  if (typeof raw !== 'string' || raw === '') return null;
  try {
    const o = JSON.parse(raw) as Partial<ShmOffer>;
    const ok =
      typeof o.path === 'string' &&
      typeof o.nonce === 'string' &&
      Number.isInteger(o.slots) &&
      o.slots! > 0 &&
      o.slots! <= MAX_SLOTS &&
      Number.isInteger(o.slotBytes) &&
      o.slotBytes! > 0;
    return ok ? (o as ShmOffer) : null;
  } catch {
    return null;
  }
}

export interface ShmLinks {
  /** The segment we write for the next rank, when it could open it. */
  out: ShmSegment | null;
  /** The previous rank's segment, when we could open it. */
  in: ShmSegment | null;
}

/**
 * Sets up both of this rank's links through the store: offer our segment to the next rank,
 * open the previous rank's, and tell it whether we could. Both sides then agree per link.
 */
export async function negotiateShm(o: {
  enabled: boolean;
  store: AddressBook;
  prefix: string;
  rank: number;
  prev: number;
  slotBytes: number;
  timeoutMs: () => number;
  guard: <T>(p: Promise<T>) => Promise<T>;
  log: Logger;
}): Promise<ShmLinks> {
  const created = o.enabled ? createSegment(slotsFor(o.slotBytes), o.slotBytes, o.log) : null;
  let incoming: ShmSegment | null = null;
  try {
    await o.guard(o.store.set(`${o.prefix}shm/offer/${o.rank}`, created ? JSON.stringify(created.offer) : ''));
    if (o.enabled)
      incoming = openSegment(await o.guard(o.store.get(`${o.prefix}shm/offer/${o.prev}`, o.timeoutMs())), o.log);
    // Keyed by the sender: "rank prev's segment is in use".
    await o.guard(o.store.set(`${o.prefix}shm/opened/${o.prev}`, incoming ? '1' : '0'));
    const accepted =
      created !== null && (await o.guard(o.store.get(`${o.prefix}shm/opened/${o.rank}`, o.timeoutMs()))) === '1';
    if (created && !accepted) created.segment.close();
    o.log.debug(
      { out: accepted, in: incoming !== null },
      'ring links: shared memory where both ends share this machine',
    );
    return { out: accepted ? created!.segment : null, in: incoming };
  } catch (e) {
    created?.segment.close();
    incoming?.close();
    throw e;
  }
}
