// Point to point within a group: send/recv of Float32Arrays between any two ranks, beside the
// ring's collectives and concurrently with them. Messages between a pair pair up in order, as
// with NCCL and torch: the k-th send from a to b is the k-th recv on b from a. A recv tells the
// sender it is posted and how long it is (a Ready message, the rendezvous protocol); only then
// does the data go, in chunks read straight into the recv's buffer. So nothing is buffered for
// a recv not yet posted, and the sender checks the sizes: a mismatch is a
// CollectiveMismatchError that, like every failure here, fails the job (job-failure.ts) and so
// reaches both sides and every other rank.
// Details: docs/internals.md#point-to-point
import type { Logger } from '@zeroring/core';
import { fromWire, PeerLostError, toWire, ZeroringError } from '../errors.ts';
import { CloseCode, type Conn } from '../transport/conn.ts';
import { Outbox } from '../transport/outbox.ts';
import { PeerLinks, type PeerLinksOptions } from '../transport/peer-links.ts';
import { asFloat32, bytesOf, decode, encode, MsgType, type DataHeader, type Header } from '../transport/wire.ts';
import type { JobFailure } from './job-failure.ts';
import { describe, P2pWatch, sizeMismatch, type P2pOp } from './p2p-watch.ts';

export interface PointToPointOptions {
  links: PeerLinksOptions;
  chunkBytes: number;
  job: JobFailure;
}

export class PointToPoint {
  private readonly links: PeerLinks;
  private readonly rank: number;
  private readonly timeoutMs: number;
  private readonly chunkElems: number;
  private readonly log: Logger;
  private readonly job: JobFailure;
  private readonly leaveJob: () => void;
  private readonly nextSeq = { send: new Map<number, number>(), recv: new Map<number, number>() };
  /** Sends not matched yet, and the Ready messages not matched yet, per destination. */
  private readonly sends = new Map<number, P2pOp[]>();
  private readonly readies = new Map<number, { q: number; n: number }[]>();
  /** Sends matched, until the socket has taken their bytes. */
  private readonly flushing = new Set<P2pOp>();
  /** Recvs posted, per source. */
  private readonly recvs = new Map<number, P2pOp[]>();
  private readonly outboxes = new Map<number, Outbox>();
  /** Per source: the data header whose payload frame comes next. */
  private readonly awaiting = new Map<number, DataHeader | null>();
  /** Peers whose links closed cleanly (they called destroy()): why a later call with them fails. */
  private readonly left = new Map<number, string>();
  private pending = 0;
  private readonly watch: P2pWatch;
  private failure: ZeroringError | null = null;
  private destroyed = false;

  constructor(o: PointToPointOptions) {
    this.rank = o.links.rank;
    this.timeoutMs = o.links.timeoutMs;
    this.chunkElems = o.chunkBytes / 4;
    this.log = o.links.log;
    this.job = o.job;
    this.links = new PeerLinks(o.links, { onLink: (peer, dir, c) => this.onLink(peer, dir, c) });
    this.leaveJob = o.job.join((e) => this.abort(e));
    const waiting = () => [...[...this.sends.values()].flat(), ...[...this.recvs.values()].flat()];
    this.watch = new P2pWatch(this.rank, this.timeoutMs, waiting, (e) => {
      if (this.failure || this.destroyed) return;
      this.log.debug({ err: e.message }, 'point to point timed out');
      this.fail(e);
    });
  }

  isend(buf: Float32Array, dst: number): Promise<void> {
    return this.issue('send', buf, dst, (op) => {
      this.list(this.sends, dst).push(op);
      void this.links.toPeer(dst).then(() => this.match(dst));
    });
  }

  irecv(buf: Float32Array, src: number): Promise<void> {
    return this.issue('recv', buf, src, (op) => {
      this.list(this.recvs, src).push(op);
      const ready: Header = { t: MsgType.Ready, q: op.seq, n: buf.length };
      // Ready messages leave in the order the recvs were posted (callbacks of one promise run in order).
      this.links.fromPeer(src).then(
        (c) => {
          if (!c.closed) for (const f of encode(ready)) c.send(f);
        },
        (e: unknown) => this.fail(asZeroring(e)),
      );
    });
  }

  /** Rejects what is pending and closes the links, each after what was sent on it. */
  async close(graceMs: number): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    this.leaveJob();
    this.watch.stop();
    for (const op of this.takeAll()) {
      op.reject(new ZeroringError(`process group destroyed on rank ${this.rank} while ${describe(op)} was pending`));
    }
    const failed = this.failure !== null;
    await this.links.close(failed ? CloseCode.abort : CloseCode.normal, failed ? 'abort' : 'destroy', graceMs);
  }

  private issue(kind: 'send' | 'recv', buf: Float32Array, peer: number, post: (op: P2pOp) => void): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    const seq = this.nextSeq[kind].get(peer) ?? 0;
    this.nextSeq[kind].set(peer, seq + 1);
    const chunksLeft = Math.max(1, Math.ceil(buf.length / this.chunkElems));
    if (this.pending++ === 0) this.busy(true);
    const done = new Promise<void>((resolve, reject) => {
      const op: P2pOp = { kind, seq, peer, buf, since: Date.now(), chunksLeft, resolve, reject };
      post(op);
      const gone = this.left.get(peer);
      if (gone !== undefined) this.fail(new PeerLostError(peer, describe(op), gone, this.rank));
    });
    return done.finally(() => {
      if (--this.pending === 0) this.busy(false);
    });
  }

  private onLink(peer: number, dir: 'send' | 'recv', c: Conn): void {
    c.onClose((code, reason) => this.onLinkClosed(peer, code, reason));
    // Two links per pair and direction of data: Ready messages come back on the send link while
    // data may be arriving on the recv link, so a message is read as what its own link carries.
    if (dir === 'send') {
      this.outboxes.set(peer, new Outbox(c, null, (what) => this.protocolError(peer, c, what)));
      c.setHandler((raw) => this.onMessage(peer, c, raw, 'send'));
      return;
    }
    this.awaiting.set(peer, null);
    c.setHandler((raw) => this.onMessage(peer, c, raw, 'recv'));
    c.readFramesInto({
      begin: (bytes) => this.payloadTarget(peer, bytes),
      end: (d) => this.onMessage(peer, c, d, 'recv'),
    });
  }

  /** Pairs the destination's unmatched sends with its Ready messages, in order, and sends their data. */
  private match(dst: number): void {
    const sends = this.sends.get(dst);
    const readies = this.readies.get(dst);
    const out = this.outboxes.get(dst);
    while (out && sends?.length && readies?.length && !this.failure) {
      const op = sends.shift()!;
      const ready = readies.shift()!;
      if (ready.q !== op.seq) {
        this.flushing.add(op);
        return this.fail(new ZeroringError(`rank ${dst} posted recv #${ready.q} where send #${op.seq} was due`));
      }
      if (ready.n !== op.buf.length) {
        this.flushing.add(op);
        return this.fail(sizeMismatch(this.rank, op, ready.n));
      }
      this.transmit(out, op);
    }
  }

  private transmit(out: Outbox, op: P2pOp): void {
    const { buf, seq } = op;
    const ce = this.chunkElems;
    out.batch(() => {
      for (let k = 0; k < op.chunksLeft; k++) {
        const h: DataHeader = {
          t: MsgType.Data,
          q: seq,
          c: 'send',
          o: '',
          n: buf.length,
          d: 'float32',
          r: -1,
          s: 0,
          k,
        };
        out.send(h, bytesOf(buf.subarray(k * ce, Math.min(buf.length, (k + 1) * ce))));
      }
    });
    // The socket reads the user's buffer until it has taken it: resolve only then.
    this.flushing.add(op);
    const settle = () => {
      if (!this.flushing.delete(op)) return;
      if (this.failure) op.reject(this.failure);
      else op.resolve();
    };
    const flushed = out.flushed();
    if (flushed) void flushed.then(settle);
    else settle();
  }

  private onMessage(peer: number, c: Conn, raw: Uint8Array, link: 'send' | 'recv'): void {
    if (this.failure || this.destroyed) return;
    const h = link === 'recv' ? this.awaiting.get(peer) : undefined;
    if (h) {
      this.awaiting.set(peer, null);
      return this.onData(peer, c, h, raw);
    }
    let d;
    try {
      d = decode(raw);
    } catch (e) {
      return this.protocolError(peer, c, (e as Error).message);
    }
    const t = d.h.t;
    if (t === MsgType.Abort) return this.fail(fromWire(d.h.e));
    if (t === MsgType.Ready && link === 'send' && this.outboxes.has(peer)) {
      this.list(this.readies, peer).push({ q: Number(d.h.q), n: Number(d.h.n) });
      return this.match(peer);
    }
    if (t === MsgType.Data && link === 'recv' && this.awaiting.has(peer) && !d.shm) {
      if (d.separate) this.awaiting.set(peer, d.h);
      else this.onData(peer, c, d.h, d.payload!);
      return;
    }
    this.protocolError(peer, c, `unexpected message of type ${t} on a point-to-point link`);
  }

  /** The recv's own buffer, where a chunk of the expected message lands. */
  private payloadTarget(src: number, bytes: number): Uint8Array | null {
    const h = this.awaiting.get(src);
    const op = this.recvs.get(src)?.[0];
    if (!h || !op || h.q !== op.seq || h.n !== op.buf.length || bytes % 4 !== 0) return null;
    const off = h.k * this.chunkElems;
    if (off + bytes / 4 > op.buf.length) return null;
    return bytesOf(op.buf.subarray(off, off + bytes / 4));
  }

  private onData(src: number, c: Conn, h: DataHeader, payload: Uint8Array): void {
    const op = this.recvs.get(src)?.[0];
    if (!op || h.c !== 'send' || h.q !== op.seq) {
      const want = op ? `recv #${op.seq}` : 'no recv posted';
      return this.protocolError(src, c, `data for send #${h.q} (${String(h.c)}), expected ${want}`);
    }
    if (h.n !== op.buf.length) return this.fail(sizeMismatch(this.rank, op, h.n));
    const off = h.k * this.chunkElems;
    const elems = payload.byteLength / 4;
    const want = Math.min(this.chunkElems, op.buf.length - off);
    if (!(elems === want || (op.buf.length === 0 && elems === 0))) {
      return this.protocolError(src, c, `chunk ${h.k} of send #${h.q} has ${payload.byteLength} bytes`);
    }
    const view = op.buf.subarray(off, off + elems);
    if (payload.buffer !== view.buffer || payload.byteOffset !== view.byteOffset) view.set(asFloat32(payload));
    op.since = Date.now();
    if (--op.chunksLeft > 0) return;
    this.recvs.get(src)!.shift();
    op.resolve();
  }

  private onLinkClosed(peer: number, code: number, reason: string): void {
    if (this.failure || this.destroyed) return;
    const clean = code === CloseCode.normal;
    const why = clean ? 'it called destroy()' : `connection closed (code ${code}${reason ? `: ${reason}` : ''})`;
    const op = this.pendingWith(peer);
    if (clean && !op) {
      this.left.set(peer, why);
      return;
    }
    this.fail(new PeerLostError(peer, op ? describe(op) : null, why, this.rank));
  }

  private protocolError(peer: number, c: Conn, what: string): void {
    c.fail(CloseCode.malformed, what);
    this.fail(new PeerLostError(peer, null, `protocol error: ${what}`, this.rank));
  }

  private fail(e: ZeroringError): void {
    this.job.fail(e);
  }

  /** The job failed (here or anywhere): reject everything, tell the peers, close the links. */
  private abort(e: ZeroringError): void {
    if (this.failure || this.destroyed) return;
    this.failure = e;
    this.watch.stop();
    for (const op of this.takeAll()) op.reject(e);
    // The abort precedes the close on each link, so a peer learns the failure rather than a lost link.
    this.links.sendControl({ t: MsgType.Abort, e: toWire(e), from: this.rank });
    void this.links.close(CloseCode.abort, 'abort', 1000).catch(() => undefined);
  }

  private takeAll(): P2pOp[] {
    const all = [...this.flushing, ...[...this.sends.values()].flat(), ...[...this.recvs.values()].flat()];
    this.flushing.clear();
    this.sends.clear();
    this.recvs.clear();
    return all;
  }

  private pendingWith(peer: number): P2pOp | undefined {
    return this.recvs.get(peer)?.[0] ?? this.sends.get(peer)?.[0] ?? [...this.flushing].find((o) => o.peer === peer);
  }

  /** While calls are pending: the links keep the process alive, and the watch looks for progress. */
  private busy(on: boolean): void {
    this.links.setRef(on);
    if (on) this.watch.start();
    else this.watch.stop();
  }

  private list<T>(m: Map<number, T[]>, peer: number): T[] {
    let l = m.get(peer);
    if (!l) m.set(peer, (l = []));
    return l;
  }
}

function asZeroring(e: unknown): ZeroringError {
  return e instanceof ZeroringError ? e : new ZeroringError((e as Error)?.message ?? String(e), { cause: e });
}
