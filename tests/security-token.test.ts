// The job token never crosses the wire, and what does cross cannot be replayed. A recording TCP
// proxy sits between a client and a real endpoint (the rendezvous store, a ring peer listener);
// the conversation works through it, yet neither the token nor any encoding of it appears in
// the recorded bytes; and the client's recorded handshake, replayed on a new connection (the
// server's fresh nonce makes the old MAC worthless), is refused with close code 4001.
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { connect, createServer, type Server } from 'node:net';
import type WebSocketT from 'ws';
import { afterAll, describe, expect, it } from 'vitest';
import { getLogger } from '@zeroring/core';
import { startStoreServer } from '@zeroring/comm';
import { StoreClient } from '@zeroring/comm';
import { Conn } from '@zeroring/comm';
import { listen } from '@zeroring/comm';

const WebSocket = createRequire(new URL('../packages/comm/package.json', import.meta.url))('ws') as typeof WebSocketT;
const log = getLogger({ component: 'security-test' });
log.level = 'silent';

interface Recorder {
  port: number;
  up: Buffer[];
  down: Buffer[];
  server: Server;
}

/** A TCP proxy to 127.0.0.1:target that keeps every byte each way. */
function recordingProxy(target: number): Promise<Recorder> {
  const rec = { up: [] as Buffer[], down: [] as Buffer[] };
  const server = createServer((client) => {
    const upstream = connect(target, '127.0.0.1');
    client.on('data', (d) => {
      rec.up.push(d);
      upstream.write(d);
    });
    upstream.on('data', (d) => {
      rec.down.push(d);
      client.write(d);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve({ ...rec, port: (server.address() as { port: number }).port, server })),
  );
}

function expectNoToken(bytes: Buffer, token: string): void {
  const raw = Buffer.from(token, 'utf8');
  for (const form of [
    raw,
    Buffer.from(raw.toString('base64')),
    Buffer.from(raw.toString('hex')),
    Buffer.from(token.toUpperCase()),
  ]) {
    expect(bytes.includes(form), `token (${form.toString().slice(0, 12)}...) seen on the wire`).toBe(false);
  }
  // Nor any 16-byte window of it (a partial leak).
  for (let i = 0; i + 16 <= raw.length; i += 8) expect(bytes.includes(raw.subarray(i, i + 16))).toBe(false);
}

/** The payload of the client's first WebSocket frame (the auth message; zero mask, < 126 bytes). */
function firstClientFrame(up: Buffer): Buffer {
  const start = up.indexOf('\r\n\r\n') + 4;
  expect(up[start]).toBe(0x82); // FIN + binary
  const len = up[start + 1]! & 0x7f;
  expect(len).toBeLessThan(126);
  const mask = up.subarray(start + 2, start + 6);
  const body = Buffer.from(up.subarray(start + 6, start + 6 + len));
  for (let i = 0; i < body.length; i++) body[i]! ^= mask[i % 4]!;
  return body;
}

/** Connects to the endpoint, waits for its hello, sends `frame`, resolves with the close code. */
function replay(port: number, frame: Buffer): Promise<number> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/`, { perMessageDeflate: false });
    ws.once('message', () => ws.send(frame));
    ws.on('error', () => undefined);
    ws.on('close', (code) => resolve(code));
  });
}

const cleanups: Array<() => unknown> = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

describe('the job token on the wire', () => {
  it('store: works through a recorder, the token never appears, a replayed handshake is refused', async () => {
    const token = randomBytes(24).toString('hex') + '-Secret-Token';
    const store = await startStoreServer({ host: '127.0.0.1', port: 0, token, log });
    cleanups.push(() => store.close());
    const proxy = await recordingProxy(store.port);
    cleanups.push(() => proxy.server.close());
    const client = await StoreClient.connect({ host: '127.0.0.1', port: proxy.port, token, rank: 3, log });
    await client.set('k', 'v');
    expect(await client.get('k', 5000)).toBe('v');
    client.close();
    const up = Buffer.concat(proxy.up);
    const down = Buffer.concat(proxy.down);
    expect(up.length).toBeGreaterThan(100);
    expect(down.length).toBeGreaterThan(50);
    expectNoToken(Buffer.concat([up, down]), token);
    const auth = firstClientFrame(up);
    expect(auth.includes(Buffer.from('auth'))).toBe(true);
    expect(await replay(store.port, auth)).toBe(4001);
  });

  it('ring peer: the same for a peer connection', async () => {
    const token = 'peer-' + randomBytes(24).toString('base64');
    const accepted: Conn[] = [];
    const listener = await listen({
      host: '127.0.0.1',
      port: 0,
      token,
      purpose: 'peer',
      maxPayload: 1 << 20,
      authTimeoutMs: 10_000,
      log,
      onConn: (c) => accepted.push(c),
    });
    cleanups.push(() => listener.close());
    const proxy = await recordingProxy(listener.port);
    cleanups.push(() => proxy.server.close());
    const c = await Conn.connect('127.0.0.1', proxy.port, 5, {
      token,
      purpose: 'peer',
      log,
      authTimeoutMs: 10_000,
      maxPayload: 1 << 20,
    });
    const got = new Promise<Buffer>((r) => {
      const poll = () => (accepted[0] ? accepted[0].setHandler(r) : setTimeout(poll, 10));
      poll();
    });
    c.send(Buffer.from('hello peer'));
    expect((await got).toString()).toBe('hello peer');
    expect(accepted[0]!.peerRank).toBe(5);
    c.close();
    expectNoToken(Buffer.concat([...proxy.up, ...proxy.down]), token);
    expect(await replay(listener.port, firstClientFrame(Buffer.concat(proxy.up)))).toBe(4001);
  });
});
