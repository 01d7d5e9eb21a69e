// Establishing the ring, before any collective: each rank listens, publishes its address in the
// rendezvous store, dials its previous rank at the address that rank published, and waits for
// its next rank to dial it; then the two ends of each link agree whether large payloads go
// through shared memory (shm.ts). The running transport (ring.ts) gets the result.
//
// Every wait ends by the rendezvous deadline, or sooner when the rendezvous is broken
// elsewhere (the store says so): a rank never waits out the timeout for a world that cannot
// form. A setup that fails leaves nothing open behind it.
import type { Logger } from '@zeroring/core';
import { CommTimeoutError, ConfigError, PeerLostError, ZeroringError } from '../errors.ts';
import type { AddressBook } from './address-book.ts';
import { CloseCode, Conn } from './conn.ts';
import { listen, type Listener } from './listener.ts';
import { negotiateShm, type ShmSegment } from './shm.ts';
import { INLINE_MAX_BYTES } from './wire.ts';

/** A chunk is at most this big (ring.ts and the collectives agree through plan.ts); frames are bounded just above. */
export const PEER_MAX_PAYLOAD = 16 * 1024 * 1024 + 64 * 1024;

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

/** The two links of an established ring, and how each carries large payloads. */
export interface RingLinks {
  /** Dialled by us: data from the previous rank arrives here. */
  prevConn: Conn;
  /** Accepted from the next rank: our data leaves here. */
  nextConn: Conn;
  listener: Listener;
  shmOut: ShmSegment | null;
  shmIn: ShmSegment | null;
}

/** Publishes our address, dials the previous rank and waits for the next one to dial us. */
export async function connectRing(o: RingOptions): Promise<RingLinks> {
  const setup = new RingSetup(o);
  const listener = await setup.listen();
  try {
    const addr = await setup.publishAndLookUp(listener.port);
    const prevConn = await setup.dialPrev(addr);
    const nextConn = await setup.acceptNext();
    const shm = await setup.negotiateShm();
    return { prevConn, nextConn, listener, shmOut: shm.out, shmIn: shm.in };
  } catch (e) {
    await setup.abandon(listener);
    throw e;
  }
}

/** The steps of connectRing, and what each leaves open for abandon() to close. */
class RingSetup {
  private readonly prev: number;
  private readonly next: number;
  private readonly deadline: number;
  private nextConn: Conn | undefined;
  private gotNext!: (c: Conn) => void;
  private readonly nextReady = new Promise<Conn>((r) => (this.gotNext = r));
  private dial: Promise<Conn> | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly o: RingOptions) {
    this.prev = (o.rank - 1 + o.worldSize) % o.worldSize;
    this.next = (o.rank + 1) % o.worldSize;
    this.deadline = Date.now() + o.timeoutMs;
  }

  /** Listens for the next rank, and for no one else. */
  listen(): Promise<Listener> {
    const { o, next } = this;
    return listenForPeers(o, (c) => {
      if (c.peerRank !== next) {
        const why = `rank ${c.peerRank} dialled rank ${o.rank}, expected only rank ${next}`;
        return c.fail(CloseCode.unexpectedPeer, why);
      }
      if (this.nextConn && !this.nextConn.closed) {
        return c.fail(CloseCode.duplicate, `a second connection claims rank ${next}`);
      }
      this.nextConn = c;
      this.gotNext(c);
    });
  }

  /** Publishes where we listen; the previous rank's address once it has published its own. */
  async publishAndLookUp(port: number): Promise<string> {
    const { o } = this;
    await this.guard(o.store.set(`${o.prefix}addr/${o.rank}`, `${o.advertiseHost}:${port}`));
    const addr = await this.guard(
      o.store.get(`${o.prefix}addr/${this.prev}`, this.left()).catch(async (e: unknown) => {
        if (e instanceof CommTimeoutError) throw await missingRanks(o, this.deadline);
        throw e;
      }),
    );
    return String(addr);
  }

  dialPrev(addr: string): Promise<Conn> {
    const { o, prev } = this;
    const [host, port] = splitHostPort(addr);
    // The dialled link is the one data arrives on: it reads its frames itself (frame-reader.ts).
    this.dial = dialPeer(host, port, o, Math.max(1000, this.deadline - Date.now()));
    // It published its address, so it was up: a refused or broken dial means it is gone.
    return this.guard(this.dial).catch((e: unknown) => {
      if (e instanceof ZeroringError) throw e;
      const why = `could not connect to it at ${addr}: ${(e as Error).message}`;
      throw new PeerLostError(prev, 'rendezvous', why, o.rank);
    });
  }

  async acceptNext(): Promise<Conn> {
    const { o, next } = this;
    const late = new Promise<never>((_, rej) => {
      this.timer = setTimeout(() => {
        const msg = `rendezvous: rank ${next} did not connect to rank ${o.rank} within ${o.timeoutMs} ms`;
        rej(new CommTimeoutError(msg, o.timeoutMs, o.rank));
      }, this.left());
    });
    const conn = await this.guard(Promise.race([this.nextReady, late]));
    clearTimeout(this.timer);
    return conn;
  }

  negotiateShm(): ReturnType<typeof negotiateShm> {
    const { o } = this;
    return negotiateShm({
      enabled: o.sharedMemory && o.chunkBytes > INLINE_MAX_BYTES,
      store: o.store,
      prefix: o.prefix,
      rank: o.rank,
      prev: this.prev,
      slotBytes: o.chunkBytes,
      timeoutMs: () => this.left(),
      guard: (p) => this.guard(p),
      log: o.log,
    });
  }

  /** Closes whatever the steps so far opened. */
  async abandon(listener: Listener): Promise<void> {
    clearTimeout(this.timer);
    // A dial still in flight is closed as soon as it completes.
    this.dial?.then(
      (c) => c.terminate(),
      () => undefined,
    );
    this.nextConn?.terminate();
    await listener.close();
  }

  private guard<T>(p: Promise<T>): Promise<T> {
    return this.o.abort ? Promise.race([p, this.o.abort]) : p;
  }

  private left(): number {
    return Math.max(1, this.deadline - Date.now());
  }
}

/** Listens for ring peers (any rank that proves the token; `onConn` decides whom it wants). */
export function listenForPeers(
  o: Pick<RingOptions, 'bindHost' | 'token' | 'log'>,
  onConn: (c: Conn) => void,
): Promise<Listener> {
  return listen({
    host: o.bindHost,
    port: 0,
    token: o.token,
    purpose: 'peer',
    maxPayload: PEER_MAX_PAYLOAD,
    authTimeoutMs: 10_000,
    log: o.log,
    onConn,
  });
}

/**
 * Dials a peer's listener as the receiving end of a link: the token handshake as rank o.rank,
 * then frames read straight into place (frame-reader.ts). Point-to-point links dial the same way.
 */
export function dialPeer(
  host: string,
  port: number,
  o: Pick<RingOptions, 'rank' | 'token' | 'log'>,
  authTimeoutMs: number,
): Promise<Conn> {
  return Conn.connect(host, port, o.rank, {
    token: o.token,
    purpose: 'peer',
    log: o.log,
    authTimeoutMs,
    maxPayload: PEER_MAX_PAYLOAD,
    readFrames: true,
  });
}

export function splitHostPort(addr: string): [string, number] {
  const i = addr.lastIndexOf(':');
  const host = addr.slice(0, i).replace(/^\[|\]$/g, '');
  const port = Number(addr.slice(i + 1));
  if (i < 0 || !Number.isInteger(port) || port <= 0 || port > 65535) {
    throw new ConfigError(`bad peer address '${addr}' in the store, expected host:port`);
  }
  return [host, port];
}

async function missingRanks(o: RingOptions, deadline: number): Promise<ZeroringError> {
  const missing: number[] = [];
  for (let r = 0; r < o.worldSize; r++) {
    if (!(await o.store.check([`${o.prefix}addr/${r}`]).catch(() => false))) missing.push(r);
  }
  return new CommTimeoutError(
    `rendezvous timed out after ${o.timeoutMs} ms on rank ${o.rank}: rank(s) ${missing.join(', ') || '?'} of ` +
      `WORLD_SIZE=${o.worldSize} never joined (store ${o.store.host}:${o.store.port}); ` +
      'started with the same MASTER_ADDR/MASTER_PORT/WORLD_SIZE?',
    o.timeoutMs + Math.max(0, Date.now() - deadline),
    o.rank,
  );
}
