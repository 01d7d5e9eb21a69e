// The frame reader against a real ws server over a real socket: binary frames land in the
// sink's buffers byte for byte and in order, whatever the read boundaries; everything else
// (ping, text, fragments, oversized frames, close) is still ws's business and behaves as before.
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { FrameReader, type FrameSink } from '../src/transport/frame-reader.ts';

let server: WebSocketServer | undefined;
afterEach(() => server?.close());

/** A server that runs `script` on the first connection; a client whose frames go through a FrameReader. */
async function pair(maxPayload: number, script: (peer: WebSocket) => void, attachAfterMessages = 0) {
  server = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate: false });
  await new Promise((r) => server!.once('listening', r));
  server.once('connection', (peer) => script(peer));
  const got: { data: Uint8Array; target: Uint8Array | null }[] = [];
  const targets: (Uint8Array | null)[] = [];
  let wantTarget = true;
  const reader = new FrameReader(() => undefined);
  const ws = new WebSocket(`ws://127.0.0.1:${(server.address() as AddressInfo).port}/`, {
    perMessageDeflate: false,
    maxPayload,
    createConnection: reader.createConnection as never,
  });
  let upgraded: import('node:net').Socket | undefined;
  ws.on('upgrade', (res) => (upgraded = res.socket as import('node:net').Socket));
  const sink: FrameSink = {
    begin(length) {
      // Every other frame asks for a buffer of its own.
      const t = wantTarget ? new Uint8Array(length) : null;
      wantTarget = !wantTarget;
      targets.push(t);
      return t;
    },
    end(data) {
      got.push({ data: data.slice(), target: targets[got.length] ?? null });
      if (targets[got.length - 1]) expect(data).toBe(targets[got.length - 1]);
    },
  };
  ws.on('open', () => {
    reader.install(ws, upgraded!);
    if (attachAfterMessages === 0) reader.attach(sink);
  });
  const messages: { data: Buffer; binary: boolean }[] = [];
  ws.on('message', (data: Buffer, binary) => {
    messages.push({ data, binary });
    // As the ring does: frames before the sink is attached are ws's, the rest the sink's.
    if (messages.length === attachAfterMessages) reader.attach(sink);
  });
  const errors: string[] = [];
  ws.on('error', (e) => errors.push(e.message));
  const closed = new Promise<number>((r) => ws.on('close', (code) => r(code)));
  return { ws, got, messages, closed, errors };
}

describe('frame reader', () => {
  it('binary frames of every size reach the sink in order; pings, text, fragments go to ws; close works', async () => {
    const sizes = [0, 1, 125, 126, 65535, 65536, 70_001, 1 << 20, 3_000_001];
    const sent = sizes.map((n) => randomBytes(n));
    let pongs = 0;
    const { got, messages, closed } = await pair(8 << 20, (peer) => {
      peer.on('pong', () => pongs++);
      sent.forEach((b, i) => {
        peer.send(b, { binary: true });
        if (i % 3 === 0) peer.ping();
      });
      peer.send('hello');
      peer.send(Buffer.from('frag'), { binary: true, fin: false });
      peer.send(Buffer.from('mented'), { binary: true, fin: true });
      peer.send(Buffer.from([7, 7]), { binary: true });
      peer.close(4321, 'done');
    });
    expect(await closed).toBe(4321);
    // The last binary frame arrives after the fragmented message, which ws assembled.
    expect(got.map((g) => g.data.length)).toEqual([...sizes, 2]);
    for (let i = 0; i < sizes.length; i++) expect(Buffer.from(got[i]!.data).equals(sent[i]!)).toBe(true);
    expect(got.some((g) => g.target !== null) && got.some((g) => g.target === null)).toBe(true);
    expect(messages).toEqual([
      { data: Buffer.from('hello'), binary: false },
      { data: Buffer.from('fragmented'), binary: true },
    ]);
    expect(pongs).toBe(3);
  });

  it('large frames before the sink is attached go through ws (it pauses, resumes), the rest to the sink', async () => {
    const before = [randomBytes(3_000_000), randomBytes(200_000)];
    const after = [randomBytes(2_000_000), randomBytes(5)];
    const { got, messages, closed } = await pair(
      8 << 20,
      (peer) => {
        peer.send(before[0]!, { binary: true });
        peer.send('x'.repeat(100_000));
        peer.send(before[1]!, { binary: true });
        for (const b of after) peer.send(b, { binary: true });
        peer.close(1000);
      },
      3,
    );
    expect(await closed).toBe(1000);
    expect(messages.map((m) => m.data.length)).toEqual([3_000_000, 100_000, 200_000]);
    expect(Buffer.from(messages[0]!.data).equals(before[0]!) && Buffer.from(messages[2]!.data).equals(before[1]!)).toBe(
      true,
    );
    expect(got.map((g) => Buffer.from(g.data).equals(after[got.indexOf(g)]!))).toEqual([true, true]);
  });

  it('an oversized frame is refused by ws (as without the reader) and never reaches the sink', async () => {
    const { got, closed, errors } = await pair(1000, (peer) => {
      peer.send(randomBytes(10), { binary: true });
      peer.send(randomBytes(5000), { binary: true });
      peer.send(randomBytes(10), { binary: true });
    });
    await closed;
    expect(errors).toEqual(['Max payload size exceeded']);
    expect(got.map((g) => g.data.length)).toEqual([10]);
  });
});
