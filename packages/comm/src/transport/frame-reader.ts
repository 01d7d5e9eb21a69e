// Reads the WebSocket frames of one client connection ahead of ws's own receiver, so that a
// large binary frame is written straight into the buffer that will use it: ws's copies of
// multi-read frames into fresh buffers cost more CPU than the reduction itself. Frames it does not
// take go to ws whole, so the wire stays plain RFC 6455. It reaches into ws's private members
// (WS_INTERNALS below), so ws is pinned and test/ws-internals.test.ts checks them.
// Details: docs/internals.md#frame-reader
import { connect, type NetConnectOpts, type Socket } from 'node:net';
import type { Writable } from 'node:stream';
import type WebSocket from 'ws';

/** The ws release whose private members this reader uses (package.json pins exactly this). */
export const WS_VERSION = '8.23.0';

/** ws's private members the reader relies on, by owner. */
export const WS_INTERNALS = {
  /** WebSocket: its frame parser, a Writable the socket's bytes are written into. */
  websocket: ['_receiver'],
  /** Receiver: the configured frame size limit, and the flag it sets at once on a bad frame. */
  receiver: ['_maxPayload', '_errored'],
  /** The socket's 'data' listener ws attaches, found by its function name. */
  socketDataListener: 'socketOnData',
} as const;

/** ws's receiver as this reader uses it. */
export type WsReceiver = Writable & { _maxPayload: number; _errored: boolean };

/**
 * ws's receiver and socket listener on an open connection, or an error naming what this ws
 * version lacks of WS_INTERNALS.
 */
export function wsInternals(ws: WebSocket, socket: Socket): { receiver: WsReceiver; onData: (chunk: Buffer) => void } {
  const receiver = (ws as unknown as { _receiver?: Partial<WsReceiver> | null })._receiver;
  const missing: string[] = [];
  if (!receiver || typeof receiver.write !== 'function') missing.push('WebSocket._receiver (a Writable)');
  else {
    if (typeof receiver._maxPayload !== 'number') missing.push('Receiver._maxPayload (a number)');
    if (typeof receiver._errored !== 'boolean') missing.push('Receiver._errored (a boolean)');
  }
  const name = WS_INTERNALS.socketDataListener;
  const onData = socket.listeners('data').find((f) => f.name === name) as ((chunk: Buffer) => void) | undefined;
  if (!onData) missing.push(`the socket 'data' listener named ${name}`);
  if (missing.length > 0) {
    throw new Error(
      `ws internals changed: ${missing.join(', ')} missing, expected those of ws ${WS_VERSION}; ` +
        'cannot install the frame reader',
    );
  }
  return { receiver: receiver as WsReceiver, onData: onData! };
}

const OPCODE_BINARY = 2;
/** Longest RFC 6455 header: 2 + 8 (64-bit length) + 4 (mask key). */
const MAX_HEADER_BYTES = 14;
/** One socket read at most: loopback delivers large reads when data is waiting. */
const READ_BUFFER_BYTES = 256 * 1024;
/** A payload read directly into its destination must still have this much to come (a read per view). */
const DIRECT_READ_MIN_BYTES = 16 * 1024;

export interface FrameSink {
  /**
   * A binary frame of `length` bytes begins. Return the buffer its payload is to be written into
   * (exactly `length` bytes), or null to receive it in a buffer of the reader's own.
   */
  begin(length: number): Uint8Array | null;
  /** The frame's payload is complete: `data` is begin()'s buffer or one the sink may keep. */
  end(data: Uint8Array): void;
}

export class FrameReader {
  private sink: FrameSink | null = null;
  private receiver: WsReceiver | null = null;
  private readonly readBuf = Buffer.allocUnsafe(READ_BUFFER_BYTES);
  /** The view of the current payload handed out for the next read, if any. */
  private direct: Uint8Array | null = null;
  private readonly head = Buffer.alloc(MAX_HEADER_BYTES);
  private headLen = 0;
  /** The frame being read: payload bytes still to come, where they go, how many arrived; or passed to ws. */
  private remaining = 0;
  private target: Uint8Array | null = null;
  private filled = 0;
  private passing = false;
  /** ws's receiver asked to stop reading (as ws's own socket listener would pause). */
  private backedUp = false;
  /** ws failed the connection (its receiver no longer takes data); the rest is dropped. */
  private dead = false;

  /** Called with the time of every read (liveness). */
  constructor(private readonly onActivity: () => void) {}

  /**
   * ws's `createConnection`: a TCP socket that reads into this reader's buffer. Until install(),
   * reads are re-emitted as ordinary 'data' events (copied: the buffer is reused) so that the
   * HTTP upgrade and ws see them as usual.
   */
  createConnection = (o: NetConnectOpts & { socketPath?: string }): Socket => {
    const socket = connect({
      ...o,
      ...(o.socketPath ? { path: o.socketPath } : {}),
      onread: {
        // Asked after every read for where the next one goes.
        buffer: () => this.nextReadBuffer(),
        callback: (n: number, buf: Uint8Array): boolean => {
          this.onActivity();
          if (!this.receiver) {
            socket.emit('data', Buffer.from(buf.subarray(0, n)));
            return true;
          }
          if (buf === this.direct) this.advance(n);
          else this.push(buf.subarray(0, n));
          return !this.consumeBackedUp();
        },
      },
    } as NetConnectOpts);
    return socket;
  };

  /**
   * In the middle of a large payload the kernel copies the next read straight into its
   * destination (sized to end exactly where the payload does, so no header is ever read into
   * it); otherwise into the staging buffer, which the splitter then parses.
   */
  private nextReadBuffer(): Uint8Array {
    this.direct = null;
    if (this.target !== null && this.remaining >= DIRECT_READ_MIN_BYTES && !this.dead) {
      this.direct = this.target.subarray(this.filled, this.filled + this.remaining);
      return this.direct;
    }
    return this.readBuf;
  }

  /** A direct read put n more payload bytes in place. */
  private advance(n: number): void {
    this.filled += n;
    this.remaining -= n;
    if (this.remaining === 0) this.finish(this.target!);
  }

  /**
   * Puts the splitter in front of ws's receiver. Must be called from the 'open' event: ws has
   * attached its receiver to the socket, and no byte has been read since.
   */
  install(ws: WebSocket, socket: Socket): void {
    const { receiver, onData: wsOnData } = wsInternals(ws, socket);
    this.receiver = receiver;
    socket.removeListener('data', wsOnData);
    // Bytes that came with the HTTP 101 response are re-emitted by ws as a 'data' event.
    socket.on('data', (chunk: Buffer) => {
      this.push(chunk);
      if (this.consumeBackedUp()) socket.pause();
    });
    // As ws's own listener is removed on a receiver error: nothing read after it is used.
    ws.on('error', () => (this.dead = true));
  }

  /** From now on binary frames go to `sink` (frames already handed to ws are delivered by ws). */
  attach(sink: FrameSink): void {
    this.sink = sink;
  }

  /** Consumes one read. `chunk` is only valid during the call: whatever is kept is copied. */
  private push(chunk: Uint8Array): void {
    let off = 0;
    while (off < chunk.length && !this.dead) {
      if (this.remaining === 0 && this.target === null && !this.passing) {
        off = this.readHeader(chunk, off);
        continue;
      }
      const n = Math.min(this.remaining, chunk.length - off);
      const piece = chunk.subarray(off, off + n);
      off += n;
      this.remaining -= n;
      if (this.passing) {
        this.pass(piece);
        if (this.remaining === 0) this.passing = false;
        continue;
      }
      this.target!.set(piece, this.filled);
      this.filled += n;
      if (this.remaining === 0) this.finish(this.target!);
    }
  }

  /** Accumulates the frame header; once complete, decides who reads the payload. */
  private readHeader(chunk: Uint8Array, off: number): number {
    const need = () => (this.headLen < 2 ? 2 : headerLength(this.head));
    while (this.headLen < need() && off < chunk.length) this.head[this.headLen++] = chunk[off++]!;
    if (this.headLen < need()) return off;
    const head = this.head.subarray(0, this.headLen);
    this.headLen = 0;
    const masked = (head[1]! & 0x80) !== 0;
    const length = payloadLength(head);
    const ours = this.sink !== null && head[0] === (0x80 | OPCODE_BINARY) && !masked && length <= this.maxPayload();
    if (!ours) {
      // ws validates it (and closes with the right code if it is bad).
      this.passing = length > 0;
      this.remaining = length;
      this.pass(head);
      return off;
    }
    const target = this.sink!.begin(length);
    if (target !== null && target.byteLength !== length) {
      throw new Error(`frame sink returned ${target.byteLength} bytes for a ${length}-byte frame`);
    }
    this.target = target ?? Buffer.allocUnsafe(length);
    this.filled = 0;
    this.remaining = length;
    if (length === 0) this.finish(this.target);
    return off;
  }

  private maxPayload(): number {
    return this.receiver!._maxPayload || Number.MAX_SAFE_INTEGER;
  }

  private finish(data: Uint8Array): void {
    this.target = null;
    this.filled = 0;
    this.sink!.end(data);
  }

  private pass(bytes: Uint8Array): void {
    // ws may keep the bytes (a frame's payload can be a view of them): never our reused buffer.
    if (!this.receiver!.write(Buffer.from(bytes))) this.backedUp = true;
    // ws's receiver reports a bad frame asynchronously, but marks itself at once.
    if (this.receiver!._errored) this.dead = true;
  }

  private consumeBackedUp(): boolean {
    const b = this.backedUp;
    this.backedUp = false;
    return b;
  }
}

function headerLength(h: Uint8Array): number {
  const len7 = h[1]! & 0x7f;
  return 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (h[1]! & 0x80 ? 4 : 0);
}

function payloadLength(h: Uint8Array): number {
  const len7 = h[1]! & 0x7f;
  const v = new DataView(h.buffer, h.byteOffset, h.byteLength);
  if (len7 === 126) return v.getUint16(2);
  if (len7 === 127) {
    // Over 2^53 cannot be a real frame; ws rejects such lengths, so hand it the frame.
    const hi = v.getUint32(2);
    return hi > 0x1fffff ? Number.MAX_SAFE_INTEGER : hi * 2 ** 32 + v.getUint32(6);
  }
  return len7;
}
