// One authenticated WebSocket connection, used by both the rendezvous store and the ring.
//
// Before anything else both ends prove that they know the job token, without sending it:
// the server sends a random nonce, the client answers with its own nonce and
// HMAC-SHA256(token, purpose|client|rank|nonces), the server checks it and answers with the
// server-side MAC so the client knows it reached the job and not an impostor. Until that
// succeeds only tiny handshake messages are accepted; anything else (wrong MAC, garbage,
// oversized frames, text frames, a silent client) closes that one connection with a logged
// reason and nothing else happens.
//
// The single 'message' listener is installed at construction and never swapped: ws emits
// messages synchronously while parsing a socket read, so a listener attached after an await
// could miss data that arrived in the same read as the handshake's last message.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Socket } from 'node:net';
import { pack, unpack } from 'msgpackr';
import WebSocket from 'ws';
import { AuthError, ConfigError } from '../errors.ts';
import type { Logger } from '@zeroring/core';
import { FrameReader, type FrameSink } from './frame-reader.ts';

export const CloseCode = {
  normal: 1000,
  abort: 4000,
  authFailed: 4001,
  malformed: 4002,
  unexpectedPeer: 4003,
  duplicate: 4004,
} as const;

export type Purpose = 'store' | 'peer';

/** How long a closing connection waits for the peer's close frame before dropping the socket. */
const CLOSE_GRACE_MS = 2000;

/** Handshake messages are a few dozen bytes; anything bigger before auth is hostile. */
const PRE_AUTH_MAX_BYTES = 1024;
const PROTOCOL = 'zeroring/1';

/**
 * The close reason sent to a client whose proof of the token was wrong. The client words its
 * AuthError from it: under the same close code a silent client hears a different reason.
 */
export const WRONG_TOKEN_REASON = 'authentication failed (wrong job token)';

function hmac(token: string, purpose: Purpose, side: 'client' | 'server', rank: number, snonce: Uint8Array, cnonce: Uint8Array): Buffer {
  return createHmac('sha256', token).update(`${PROTOCOL}|${purpose}|${side}|${rank}|`).update(snonce).update(cnonce).digest();
}

function macEqual(a: unknown, b: Buffer): boolean {
  return a instanceof Uint8Array && a.length === b.length && timingSafeEqual(a, b);
}

/** ws masks client frames with a random key; between authenticated peers a zero key skips that pass over the data. */
export function zeroMask(mask: Buffer): void {
  mask[0] = mask[1] = mask[2] = mask[3] = 0;
}

interface HandshakeMsg {
  t?: unknown;
  nonce?: unknown;
  rank?: unknown;
  mac?: unknown;
}

export interface ConnOptions {
  token: string;
  purpose: Purpose;
  log: Logger;
  /** Deadline for the handshake. */
  authTimeoutMs: number;
}

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
  private snonce = randomBytes(16);
  private cnonce = randomBytes(16);
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
    private readonly myRank: number,
    private socket: Socket | undefined,
  ) {
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
    c.sendRaw(pack({ t: 'hello', nonce: c.snonce }));
    return c;
  }

  /**
   * Client side. Resolves once both ends proved the token. Rejects with the socket error
   * (e.g. ECONNREFUSED, for the caller to retry), ConfigError when the port answers but is not
   * a zeroring endpoint, or AuthError when the token is rejected.
   */
  static async connect(host: string, port: number, myRank: number, opts: ConnOptions & { maxPayload: number; readFrames?: boolean }): Promise<Conn> {
    const h = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
    const url = `ws://${h}:${port}/${opts.purpose}`;
    // The Conn exists only once ws does, but the reader must create the socket: late-bound.
    let c: Conn | undefined;
    const reader = opts.readFrames ? new FrameReader(() => c && (c.lastSeen = Date.now())) : undefined;
    const ws = new WebSocket(url, {
      perMessageDeflate: false,
      maxPayload: opts.maxPayload,
      handshakeTimeout: opts.authTimeoutMs,
      generateMask: zeroMask,
      ...(reader ? { createConnection: reader.createConnection as unknown as typeof import('node:net').createConnection } : {}),
    });
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
      const e = new ConfigError(`${host}:${port} is not a zeroring ${opts.purpose} endpoint (HTTP ${res.statusCode} to a WebSocket upgrade)`);
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
      const what = `${opts.purpose} connection ${remote}`;
      let e: Error;
      if (this.wrongProofRank !== null) {
        const claim = this.wrongProofRank >= 0 ? `claiming rank ${this.wrongProofRank}` : 'claiming no rank';
        e = new AuthError(`${what}: wrong proof of ZERORING_TOKEN from a client ${claim}`);
      } else if (code === CloseCode.authFailed) e = new AuthError(`${what}: ${reason}`);
      else e = new ConfigError(`${what}: ${reason}`);
      this.rejectReady(e);
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
    if (data.length > PRE_AUTH_MAX_BYTES) return this.fail(CloseCode.malformed, `${data.length}-byte message before authentication`);
    let m: HandshakeMsg;
    try {
      m = unpack(data) as HandshakeMsg;
    } catch {
      return this.fail(CloseCode.malformed, 'undecodable handshake message');
    }
    if (typeof m !== 'object' || m === null) return this.fail(CloseCode.malformed, 'handshake message is not an object');
    const { token, purpose } = this.opts;
    if (this.role === 'server') {
      if (m.t !== 'auth' || !(m.nonce instanceof Uint8Array) || m.nonce.length !== 16 || !Number.isInteger(m.rank))
        return this.fail(CloseCode.malformed, 'expected an auth message');
      this.cnonce = Buffer.from(m.nonce);
      const rank = m.rank as number;
      if (!macEqual(m.mac, hmac(token, purpose, 'client', rank, this.snonce, this.cnonce))) {
        this.wrongProofRank = rank;
        return this.fail(CloseCode.authFailed, WRONG_TOKEN_REASON);
      }
      this.peerRank = rank;
      this.sendRaw(pack({ t: 'ok', mac: hmac(token, purpose, 'server', rank, this.snonce, this.cnonce) }));
      this.authDone();
    } else if (m.t === 'hello') {
      if (!(m.nonce instanceof Uint8Array) || m.nonce.length !== 16) return this.fail(CloseCode.malformed, 'bad hello');
      this.snonce = Buffer.from(m.nonce);
      const mac = hmac(token, purpose, 'client', this.myRank, this.snonce, this.cnonce);
      this.sendRaw(pack({ t: 'auth', nonce: this.cnonce, rank: this.myRank, mac }));
    } else if (m.t === 'ok') {
      if (!macEqual(m.mac, hmac(token, purpose, 'server', this.myRank, this.snonce, this.cnonce)))
        return this.fail(CloseCode.authFailed, 'the server could not prove the job token');
      this.authDone();
    } else {
      return this.fail(CloseCode.malformed, 'unexpected handshake message');
    }
  }

  private authDone(): void {
    this.authed = true;
    clearTimeout(this.authTimer);
    this.resolveReady();
  }

  /** Client side: the server closed the handshake with authFailed; `reason` says why. */
  private refusedError(reason: string): AuthError {
    const them = `${this.opts.purpose === 'store' ? 'the rendezvous store' : 'the ring peer'} at ${this.remote}`;
    if (reason !== WRONG_TOKEN_REASON) {
      return new AuthError(`${them} refused our authentication (${reason || 'no reason given'})`);
    }
    // Which side holds the wrong token is not knowable here, only that the two differ.
    return new AuthError(
      `${them} refused this worker's ZERORING_TOKEN: the tokens differ ` +
        `(expected the same ZERORING_TOKEN on every worker of the job)`,
    );
  }

  private onWsClose(code: number, reason: string): void {
    this.closed = true;
    this.closeCode = code;
    this.closeReason = reason;
    clearTimeout(this.authTimer);
    if (!this.authed) {
      if (code === CloseCode.authFailed) this.rejectReady(this.refusedError(reason));
      else this.rejectReady(Object.assign(new Error(`connection to ${this.remote} closed during authentication (code ${code}${reason ? `: ${reason}` : ''})`), { code: 'ECLOSED' }));
    }
    for (const h of this.closeHandlers.splice(0)) h(code, reason);
  }
}
