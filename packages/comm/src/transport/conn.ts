// One authenticated WebSocket connection, used by both the rendezvous store and the ring.
//
// Before anything else both ends prove that they know the job token, without sending it
// (handshake.ts). Until that succeeds only tiny handshake messages are accepted; anything else
// (wrong MAC, garbage, oversized frames, text frames, a silent client) closes that one
// connection with a logged reason and nothing else happens.
//
// The single 'message' listener is installed at construction and never swapped: ws emits
// messages synchronously while parsing a socket read, so a listener attached after an await
// could miss data that arrived in the same read as the handshake's last message.
import type { Socket } from 'node:net';
import WebSocket from 'ws';
import { ConfigError } from '../errors.ts';
import type { Logger } from '@zeroring/core';
import { FrameReader, type FrameSink } from './frame-reader.ts';
import { Handshake, handshakeError, refusedError, type Purpose } from './handshake.ts';

export type { Purpose } from './handshake.ts';

export const CloseCode = {
  normal: 1000,
  abort: 4000,
  authFailed: 4001,
  malformed: 4002,
  unexpectedPeer: 4003,
  duplicate: 4004,
} as const;

/** How long a closing connection waits for the peer's close frame before dropping the socket. */
const CLOSE_GRACE_MS = 2000;

/** ws masks client frames with a random key; between authenticated peers a zero key skips that pass over the data. */
export function zeroMask(mask: Buffer): void {
  mask[0] = mask[1] = mask[2] = mask[3] = 0;
}

export interface ConnOptions {
  token: string;
  purpose: Purpose;
  log: Logger;
  /** Deadline for the handshake. */
  authTimeoutMs: number;
}

/** What dialling takes beyond ConnOptions. */
export type DialOptions = ConnOptions & { maxPayload: number; readFrames?: boolean };

export class Conn {
  /** The peer's rank as proven in the handshake (-1 for a non-rank client such as a launcher). */
  peerRank = -1;
  /**
   * Server side: the rank a client claimed in a well-formed handshake whose proof of the token
   * was wrong (a worker with another token, or a stranger who speaks the protocol); else null.
   */
  wrongProofRank: number | null = null;
  /** Last time any byte arrived (heartbeats included); used to detect a silent peer. */
  lastSeen = Date.now();
  readonly ready: Promise<void>;
  closed = false;
  closeCode = 0;
  closeReason = '';

  private authed = false;
  private readonly handshake: Handshake;
  private queued: Buffer[] = [];
  private handler: ((data: Buffer) => void) | undefined;
  private closeHandlers: ((code: number, reason: string) => void)[] = [];
  private resolveReady!: () => void;
  private rejectReady!: (e: Error) => void;
  private authTimer: NodeJS.Timeout | undefined;
  /** Client connections that carry bulk data read their frames themselves (frame-reader.ts). */
  private reader: FrameReader | undefined;

  private constructor(
    readonly ws: WebSocket,
    readonly role: 'server' | 'client',
    readonly remote: string,
    private readonly opts: ConnOptions,
    /** For the client: our own rank, sent in the handshake. */
    myRank: number,
    private socket: Socket | undefined,
  ) {
    this.handshake = new Handshake(role, opts.token, opts.purpose, myRank);
    this.ready = new Promise((res, rej) => {
      this.resolveReady = res;
      this.rejectReady = rej;
    });
    this.ready.catch(() => undefined);
    ws.binaryType = 'nodebuffer';
    ws.on('message', (data: Buffer, isBinary: boolean) => this.onWsMessage(data, isBinary));
    ws.on('ping', () => (this.lastSeen = Date.now()));
    ws.on('pong', () => (this.lastSeen = Date.now()));
    ws.on('error', (e: Error) => {
      // ws closes the connection itself after an error (e.g. 1009 for an oversized frame).
      // A refused dial is routine while rank 0 starts up: the caller retries.
      const routine = (e as NodeJS.ErrnoException).code === 'ECONNREFUSED';
      opts.log[routine ? 'debug' : 'warn']({ remote, purpose: opts.purpose, err: e.message }, 'connection error');
      if (!this.authed) this.rejectReady(e);
    });
    ws.on('close', (code: number, reason: Buffer) => this.onWsClose(code, reason.toString()));
    if (socket) this.watchSocket(socket);
    this.authTimer = setTimeout(() => {
      if (this.authed) return;
      this.fail(CloseCode.authFailed, `no authentication within ${opts.authTimeoutMs} ms`);
    }, opts.authTimeoutMs);
    this.authTimer.unref();
  }

  /** Server side: the handshake starts immediately. */
  static accept(ws: WebSocket, socket: Socket, opts: ConnOptions): Conn {
    const remote = `${socket.remoteAddress}:${socket.remotePort}`;
    const c = new Conn(ws, 'server', remote, opts, -1, socket);
    c.sendRaw(c.handshake.hello());
    return c;
  }

  /**
   * Client side. Resolves once both ends proved the token. Rejects with the socket error
   * (e.g. ECONNREFUSED, for the caller to retry), ConfigError when the port answers but is not
   * a zeroring endpoint, or AuthError when the token is rejected.
   */
  static async connect(host: string, port: number, myRank: number, opts: DialOptions): Promise<Conn> {
    // The Conn exists only once ws does, but the reader must create the socket: late-bound.
    let c: Conn | undefined;
    const { ws, reader } = openWebSocket(host, port, opts, () => c && (c.lastSeen = Date.now()));
    c = new Conn(ws, 'client', `${host}:${port}`, opts, myRank, undefined);
    c.reader = reader;
    // Only once ws owns the socket: a 'data' listener added at 'upgrade' would set the socket
    // flowing and swallow the bytes that came with the 101 response (the server's hello).
    let upgraded: Socket | undefined;
    ws.on('upgrade', (res) => (upgraded = res.socket as Socket));
    ws.on('open', () => {
      if (!upgraded) return;
      c.watchSocket(upgraded);
      reader?.install(ws, upgraded);
    });
    ws.on('unexpected-response', (_req, res) => {
      const e = new ConfigError(
        `${host}:${port} is not a zeroring ${opts.purpose} endpoint (HTTP ${res.statusCode} to a WebSocket upgrade)`,
      );
      c.rejectReady(e);
      ws.terminate();
    });
    await c.ready;
    return c;
  }

  get authenticated(): boolean {
    return this.authed;
  }

  get localAddress(): string | undefined {
    return this.socket?.localAddress;
  }

  /** Receives every message after the handshake; messages that arrived earlier are replayed. */
  setHandler(h: (data: Buffer) => void): void {
    this.handler = h;
    const q = this.queued;
    this.queued = [];
    for (const m of q) h(m);
  }

  /**
   * Binary frames that arrive from now on go to `sink` instead of the message handler, so a
   * large payload can be read straight into its destination. Only on a connection dialled with
   * readFrames; elsewhere frames keep going to the message handler.
   */
  readFramesInto(sink: FrameSink): void {
    this.reader?.attach(sink);
  }

  onClose(h: (code: number, reason: string) => void): void {
    if (this.closed) h(this.closeCode, this.closeReason);
    else this.closeHandlers.push(h);
  }

  send(data: Uint8Array, cb?: (err?: Error) => void): void {
    this.ws.send(data, { binary: true }, cb);
  }

  /**
   * Frames sent inside `fn` leave in one write: a collective often sends several chunks (or
   * headers) in one go, and on loopback each write costs a syscall and a wake-up of the peer.
   * Scoped, not "until the next tick": on a CPU backend the training step can run on for many
   * milliseconds inside one tick, and nothing may wait for it. Only where we hold the socket
   * (the accepted side, which sends the data).
   */
  batch<T>(fn: () => T): T {
    const s = this.socket;
    if (!s) return fn();
    s.cork();
    try {
      return fn();
    } finally {
      s.uncork();
    }
  }

  /** Lets the process exit while this connection is idle (ref'd again while a collective runs). */
  setRef(on: boolean): void {
    if (!this.socket) return;
    if (on) this.socket.ref();
    else this.socket.unref();
  }

  /**
   * Starts the WebSocket closing handshake: our close frame follows everything already queued,
   * and the peer's ws answers it only after it has parsed (and handed to its owner) every frame
   * before it, so a completed handshake means all we sent was delivered. The socket is dropped
   * without that answer after graceMs.
   */
  close(code: number = CloseCode.normal, reason = '', graceMs = CLOSE_GRACE_MS): void {
    if (this.closed || this.ws.readyState === WebSocket.CLOSING) return;
    try {
      this.ws.close(code, reason.slice(0, 120));
    } catch {
      this.ws.terminate();
    }
    // A peer cut off by the network never answers the close frame, and ws would keep the socket
    // (and so the process) alive for its 30 s close timeout: give up on the handshake sooner.
    setTimeout(() => this.ws.terminate(), graceMs).unref();
  }

  terminate(): void {
    this.ws.terminate();
  }

  /** Closes with a logged reason: used for anything a peer must not send. */
  fail(code: number, reason: string): void {
    // Before the handshake the listener reports the rejection itself (one line per knock).
    const level = this.role === 'server' && !this.authed ? 'debug' : 'warn';
    const { remote, opts } = this;
    opts.log[level]({ remote, purpose: opts.purpose, peerRank: this.peerRank, code, reason }, 'closing connection');
    if (!this.authed) {
      const authFailed = code === CloseCode.authFailed;
      this.rejectReady(handshakeError(opts.purpose, remote, this.wrongProofRank, authFailed, reason));
    }
    this.close(code, reason);
    // A peer that ignores the close handshake must not keep the socket open.
    setTimeout(() => this.ws.terminate(), 2000).unref();
  }

  private watchSocket(socket: Socket): void {
    this.socket = socket;
    socket.on('data', () => (this.lastSeen = Date.now()));
  }

  private sendRaw(data: Uint8Array): void {
    this.ws.send(data, { binary: true });
  }

  private onWsMessage(data: Buffer, isBinary: boolean): void {
    this.lastSeen = Date.now();
    if (!isBinary) return this.fail(CloseCode.malformed, 'text frame (only binary frames are spoken here)');
    if (!this.authed) return this.onHandshake(data);
    if (this.handler) this.handler(data);
    else this.queued.push(data);
  }

  private onHandshake(data: Buffer): void {
    const step = this.handshake.receive(data);
    if (step.kind === 'fail') {
      if (step.wrongProofRank !== undefined) this.wrongProofRank = step.wrongProofRank;
      return this.fail(CloseCode[step.code], step.reason);
    }
    if (step.kind === 'done' && step.peerRank !== undefined) this.peerRank = step.peerRank;
    if (step.reply) this.sendRaw(step.reply);
    if (step.kind === 'done') this.authDone();
  }

  private authDone(): void {
    this.authed = true;
    clearTimeout(this.authTimer);
    this.resolveReady();
  }

  private onWsClose(code: number, reason: string): void {
    this.closed = true;
    this.closeCode = code;
    this.closeReason = reason;
    clearTimeout(this.authTimer);
    if (!this.authed) {
      if (code === CloseCode.authFailed) this.rejectReady(refusedError(this.opts.purpose, this.remote, reason));
      else
        this.rejectReady(
          Object.assign(
            new Error(
              `connection to ${this.remote} closed during authentication (code ${code}${reason ? `: ${reason}` : ''})`,
            ),
            { code: 'ECLOSED' },
          ),
        );
    }
    for (const h of this.closeHandlers.splice(0)) h(code, reason);
  }
}

/**
 * Client side: the WebSocket to a zeroring endpoint, with a frame reader of its own when it
 * carries bulk data (readFrames); `seen` is told whenever the reader takes bytes in.
 */
function openWebSocket(
  host: string,
  port: number,
  opts: DialOptions,
  seen: () => void,
): { ws: WebSocket; reader: FrameReader | undefined } {
  const h = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
  const url = `ws://${h}:${port}/${opts.purpose}`;
  const reader = opts.readFrames ? new FrameReader(seen) : undefined;
  const createConnection = reader?.createConnection as unknown as typeof import('node:net').createConnection;
  const ws = new WebSocket(url, {
    perMessageDeflate: false,
    maxPayload: opts.maxPayload,
    handshakeTimeout: opts.authTimeoutMs,
    generateMask: zeroMask,
    ...(reader ? { createConnection } : {}),
  });
  return { ws, reader };
}
