// The frame reader (src/transport/frame-reader.ts) uses private members of ws, which no semver
// range protects. These checks fail first, naming what changed, when ws is upgraded: the
// installed ws must be the exact version the reader was written against, every package that
// depends on ws must pin exactly that version, and a real connection must carry the members.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { FrameReader, WS_INTERNALS, WS_VERSION, wsInternals } from '../src/transport/frame-reader.ts';

const root = new URL('../../../', import.meta.url);
const require = createRequire(new URL('../src/transport/frame-reader.ts', import.meta.url));

let server: WebSocketServer | undefined;
afterEach(() => server?.close());

/** An open client connection (through a FrameReader's socket, as conn.ts makes them) and its socket. */
async function openConnection(maxPayload: number): Promise<{ ws: WebSocket; socket: Socket }> {
  server = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate: false });
  await new Promise((r) => server!.once('listening', r));
  const reader = new FrameReader(() => undefined);
  const ws = new WebSocket(`ws://127.0.0.1:${(server.address() as AddressInfo).port}/`, {
    perMessageDeflate: false,
    maxPayload,
    createConnection: reader.createConnection as never,
  });
  let socket: Socket | undefined;
  ws.on('upgrade', (res) => (socket = res.socket as Socket));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return { ws, socket: socket! };
}

describe('ws internals the frame reader uses', () => {
  it(`ws is exactly ${WS_VERSION}, installed and pinned in every package.json that lists it`, () => {
    const installed = (require('ws/package.json') as { version: string }).version;
    expect(installed, `installed ws ${installed}, the frame reader was written for ${WS_VERSION}`).toBe(WS_VERSION);
    for (const pkg of ['packages/comm/package.json', 'packages/cli/package.json']) {
      const deps = (JSON.parse(readFileSync(new URL(pkg, root), 'utf8')) as { dependencies: Record<string, string> })
        .dependencies;
      expect(deps.ws, `${pkg} must pin ws to exactly ${WS_VERSION} (the frame reader uses its internals)`).toBe(
        WS_VERSION,
      );
    }
  });

  it('an open connection has every private member the reader uses, with the expected types', async () => {
    const { ws, socket } = await openConnection(1234);
    const internal = ws as unknown as Record<string, unknown>;
    for (const name of WS_INTERNALS.websocket) expect(internal[name], `WebSocket.${name} is gone`).toBeTruthy();
    const receiver = internal._receiver as Record<string, unknown>;
    expect(typeof receiver.write, 'WebSocket._receiver is no longer a Writable').toBe('function');
    for (const name of WS_INTERNALS.receiver) expect(receiver, `Receiver.${name} is gone`).toHaveProperty(name);
    expect(receiver._maxPayload, 'Receiver._maxPayload no longer holds the maxPayload option').toBe(1234);
    expect(receiver._errored, 'Receiver._errored is no longer a boolean').toBe(false);
    const names = socket.listeners('data').map((f) => f.name);
    expect(names, `the socket's 'data' listener is no longer named ${WS_INTERNALS.socketDataListener}`).toContain(
      WS_INTERNALS.socketDataListener,
    );
    // The helper install() uses finds them all (it throws naming what is missing otherwise).
    expect(() => wsInternals(ws, socket)).not.toThrow();
    ws.terminate();
  });

  it('the receiver marks itself errored synchronously on a bad frame (the reader stops on that flag)', async () => {
    const { ws, socket } = await openConnection(1 << 20);
    const { receiver, onData } = wsInternals(ws, socket);
    // Taken off the socket as install() does, so only this frame reaches the receiver.
    socket.removeListener('data', onData);
    ws.on('error', () => undefined);
    // FIN + reserved opcode 0x3, unmasked, no payload: invalid in RFC 6455.
    receiver.write(Buffer.from([0x83, 0x00]));
    expect(receiver._errored, 'Receiver._errored is not set at once on a bad frame').toBe(true);
    ws.terminate();
  });

  it('names what is missing when ws lacks the internals', () => {
    const socket = { listeners: () => [] } as unknown as Socket;
    const ws = { _receiver: null } as unknown as WebSocket;
    const expected =
      "ws internals changed: WebSocket._receiver (a Writable), the socket 'data' listener named socketOnData " +
      `missing, expected those of ws ${WS_VERSION}`;
    expect(() => wsInternals(ws, socket)).toThrow(expected);
  });
});
