// Links between any two ranks of a group, opened on demand for point to point. Like the ring's,
// each link carries data one way and is dialled by its receiver: a rank's first recv from src
// dials src, and the link src sends to us on is the one we dialled (its bulk data flows from the
// accepting side, unmasked, into the dialler's frame reader). The listener starts with the
// first point-to-point call and publishes its address in the rendezvous store under the group's
// prefix; connections prove the job token with the ring's handshake (conn.ts, handshake.ts).
// Details: docs/internals.md#point-to-point
import { PeerLostError, ZeroringError } from '../errors.ts';
import type { AddressBook } from './address-book.ts';
import { CloseCode, type Conn } from './conn.ts';
import type { Listener } from './listener.ts';
import { dialPeer, listenForPeers, splitHostPort, type RingOptions } from './ring-setup.ts';
import { encode, type Header } from './wire.ts';

/** What the ring's setup takes, less what only the ring uses; `prefix` is the group's store prefix. */
export type PeerLinksOptions = Pick<
  RingOptions,
  'rank' | 'worldSize' | 'token' | 'store' | 'prefix' | 'bindHost' | 'advertiseHost' | 'timeoutMs' | 'log'
>;

export interface PeerLinkHandlers {
  /** A link is up: `send` is where we send to `peer` (it dialled us), `recv` where it sends to us. */
  onLink(peer: number, dir: 'send' | 'recv', c: Conn): void;
}

export class PeerLinks {
  private listening: Promise<Listener> | null = null;
  private readonly sendLinks = new Map<number, Promise<Conn>>();
  private readonly accepted = new Map<number, (c: Conn) => void>();
  /** Peers whose link to us is accepted: a second connection claiming one is refused. */
  private readonly claimed = new Set<number>();
  private readonly recvLinks = new Map<number, Promise<Conn>>();
  private readonly conns = new Set<Conn>();
  private ref = true;
  private closed = false;
  private closing: Promise<void> | null = null;

  constructor(
    private readonly o: PeerLinksOptions,
    private readonly h: PeerLinkHandlers,
  ) {}

  /** The link on which we send to dst: dst dials it with its first recv from us. */
  toPeer(dst: number): Promise<Conn> {
    let link = this.sendLinks.get(dst);
    if (!link) {
      link = new Promise<Conn>((resolve) => this.accepted.set(dst, resolve));
      this.sendLinks.set(dst, link);
      void this.listen().catch(() => undefined);
    }
    return link;
  }

  /** The link on which src sends to us, dialled at its published address. */
  fromPeer(src: number): Promise<Conn> {
    let link = this.recvLinks.get(src);
    if (!link) {
      link = this.dial(src);
      link.catch(() => undefined);
      this.recvLinks.set(src, link);
      // Publish ours too: src's recvs from us dial us the same way.
      void this.listen().catch(() => undefined);
    }
    return link;
  }

  /** Whether the links keep the process alive (only while a point-to-point call is pending). */
  setRef(on: boolean): void {
    this.ref = on;
    for (const c of this.conns) c.setRef(on);
    void this.listening?.then((l) => l.setRef(on)).catch(() => undefined);
  }

  /** Sends a control message (an abort) on every open link. */
  sendControl(h: Header): void {
    const frames = encode(h);
    for (const c of this.conns) if (!c.closed) for (const f of frames) c.send(f);
  }

  /**
   * Each link's close frame follows what was already sent on it; a silent peer is cut off after
   * graceMs. The first call decides how (a destroy() after a failure closes nothing twice).
   */
  close(code: number, reason: string, graceMs: number): Promise<void> {
    this.closing ??= this.closeAll(code, reason, graceMs);
    return this.closing;
  }

  private async closeAll(code: number, reason: string, graceMs: number): Promise<void> {
    this.closed = true;
    this.setRef(true);
    const open = [...this.conns].filter((c) => !c.closed);
    const gone = open.map((c) => new Promise<void>((r) => c.onClose(() => r())));
    for (const c of open) c.close(code, reason, graceMs);
    let t: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(gone), new Promise((r) => (t = setTimeout(r, graceMs)))]);
    clearTimeout(t);
    for (const c of this.conns) if (!c.closed) c.terminate();
    const l = await this.listening?.catch(() => null);
    await l?.close();
  }

  private listen(): Promise<Listener> {
    const { o } = this;
    this.listening ??= (async () => {
      const l = await listenForPeers(o, (c) => this.onAccepted(c));
      if (!this.ref) l.setRef(false);
      await o.store.set(`${o.prefix}p2p/addr/${o.rank}`, `${o.advertiseHost}:${l.port}`);
      return l;
    })();
    return this.listening;
  }

  private onAccepted(c: Conn): void {
    const peer = c.peerRank;
    const known = Number.isInteger(peer) && peer >= 0 && peer < this.o.worldSize && peer !== this.o.rank;
    if (!known) return c.fail(CloseCode.unexpectedPeer, `rank ${peer} is not a peer of rank ${this.o.rank}`);
    if (this.claimed.has(peer)) return c.fail(CloseCode.duplicate, `a second link claims rank ${peer}`);
    this.claimed.add(peer);
    this.adopt(peer, 'send', c);
    const take = this.accepted.get(peer);
    // Without a taker, its recv came before our first send to it: that send finds the link ready.
    if (take) take(c);
    else this.sendLinks.set(peer, Promise.resolve(c));
  }

  private async dial(src: number): Promise<Conn> {
    const { o } = this;
    // Longer than the calls' own timeout, which reports a peer that never comes more clearly.
    const addr = String(await o.store.get(`${o.prefix}p2p/addr/${src}`, 2 * o.timeoutMs));
    const [host, port] = splitHostPort(addr);
    try {
      const c = await dialPeer(host, port, o, o.timeoutMs);
      this.adopt(src, 'recv', c);
      return c;
    } catch (e) {
      if (e instanceof ZeroringError) throw e;
      throw new PeerLostError(
        src,
        'point to point',
        `could not connect to it at ${addr}: ${(e as Error).message}`,
        o.rank,
      );
    }
  }

  private adopt(peer: number, dir: 'send' | 'recv', c: Conn): void {
    if (this.closed) return c.terminate();
    this.conns.add(c);
    c.onClose(() => this.conns.delete(c));
    c.setRef(this.ref);
    this.h.onLink(peer, dir, c);
  }
}
