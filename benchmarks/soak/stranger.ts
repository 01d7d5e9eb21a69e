// The stranger of the soak benchmark: connection attempts a running job must shrug off, each
// with the outcome the job's endpoints are expected to give it. Targets are the job's own
// listeners on loopback (the store and each rank's ring port), nothing else.
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { connect as tcpConnect } from 'node:net';
import type WebSocketT from 'ws';
import { getLogger } from '@zeroring/comm';
import { StoreClient } from '@zeroring/comm';
import { Conn } from '@zeroring/comm';
import { STORE_MAX_PAYLOAD } from '@zeroring/comm';
import { PEER_MAX_PAYLOAD } from '@zeroring/comm';

// ws is a dependency of @zeroring/comm, not of the workspace root: load the same copy comm uses.
const WebSocket = createRequire(new URL('../../packages/comm/package.json', import.meta.url))(
  'ws',
) as typeof WebSocketT;
type WebSocket = WebSocketT;

/** msgpack of { t: 'auth', nonce, rank: 0, mac } (the client's handshake message), written out by hand. */
function forgedAuth(): Buffer {
  const str = (s: string) => Buffer.concat([Buffer.from([0xa0 | s.length]), Buffer.from(s)]);
  const bin = (b: Buffer) => Buffer.concat([Buffer.from([0xc4, b.length]), b]);
  return Buffer.concat([
    Buffer.from([0x84]),
    str('t'),
    str('auth'),
    str('nonce'),
    bin(randomBytes(16)),
    str('rank'),
    Buffer.from([0x00]),
    str('mac'),
    bin(randomBytes(32)),
  ]);
}

export type Target = { kind: 'store' | 'peer'; host: string; port: number };

export const FAULTS = [
  'wrong-token',
  'garbage-frame',
  'oversized-preauth',
  'oversized-frame',
  'text-frame',
  'forged-mac',
  'raw-tcp',
  'drop-mid-handshake',
] as const;
export type Fault = (typeof FAULTS)[number];

export interface Attempt {
  fault: Fault;
  target: Target['kind'];
  /** What happened (an error name, a close code, "closed", ...). */
  outcome: string;
  /** Whether that is the rejection the endpoint must give. */
  rejected: boolean;
}

const log = getLogger({ component: 'stranger' });
log.level = 'silent';

/** Opens a ws, waits for the server's hello, does `act`, resolves with the close code. */
function knock(t: Target, act: (ws: WebSocket) => void, maxPayload = 1 << 20): Promise<number> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://${t.host}:${t.port}/`, { perMessageDeflate: false, maxPayload });
    const timer = setTimeout(() => {
      ws.terminate();
      resolve(-1);
    }, 20_000);
    ws.once('message', () => act(ws));
    ws.on('error', () => undefined);
    ws.on('close', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

function rawTcp(t: Target): Promise<string> {
  return new Promise((resolve) => {
    const s = tcpConnect(t.port, t.host, () => s.write(randomBytes(64)));
    let got = '';
    s.on('data', (d) => (got += d.toString('latin1')));
    s.on('error', () => undefined);
    s.on('close', () => resolve(got.split('\r\n')[0] || 'closed'));
    setTimeout(() => s.destroy(), 20_000).unref();
  });
}

async function errorName(p: Promise<{ close?: () => void; terminate?: () => void }>): Promise<string> {
  try {
    const c = await p;
    c.close?.();
    c.terminate?.();
    return 'connected';
  } catch (e) {
    return (e as Error).name;
  }
}

/** Makes one attempt of `fault` on `target` and reports what happened. */
export async function attempt(fault: Fault, target: Target): Promise<Attempt> {
  const wrong = randomBytes(32).toString('hex');
  const done = (outcome: string | number, rejected: boolean): Attempt => ({
    fault,
    target: target.kind,
    outcome: String(outcome),
    rejected,
  });
  switch (fault) {
    case 'wrong-token': {
      const name =
        target.kind === 'store'
          ? await errorName(
              StoreClient.connect({ host: target.host, port: target.port, token: wrong, timeoutMs: 10_000, log }),
            )
          : await errorName(
              Conn.connect(target.host, target.port, 0, {
                token: wrong,
                purpose: 'peer',
                log,
                authTimeoutMs: 10_000,
                maxPayload: 1 << 20,
              }),
            );
      return done(name, name === 'AuthError');
    }
    case 'garbage-frame': {
      const code = await knock(target, (ws) => ws.send(randomBytes(200)));
      return done(code, code === 4002);
    }
    case 'oversized-preauth': {
      const code = await knock(target, (ws) => ws.send(Buffer.alloc(4096, 0x5a)));
      return done(code, code === 4002);
    }
    case 'oversized-frame': {
      // Past the endpoint's maxPayload: ws refuses it from the frame header (1009).
      const max = target.kind === 'store' ? STORE_MAX_PAYLOAD : PEER_MAX_PAYLOAD;
      const code = await knock(target, (ws) => ws.send(Buffer.alloc(max + 1024, 1)));
      return done(code, code === 1009);
    }
    case 'text-frame': {
      const code = await knock(target, (ws) => ws.send('{"t":"auth"}'));
      return done(code, code === 4002);
    }
    case 'forged-mac': {
      const code = await knock(target, (ws) => ws.send(forgedAuth()));
      return done(code, code === 4001);
    }
    case 'raw-tcp': {
      const first = await rawTcp(target);
      return done(first, first === 'closed' || first.startsWith('HTTP/1.1 400'));
    }
    case 'drop-mid-handshake': {
      // Connect, get the hello, then vanish without a close frame (a reset connection).
      const code = await knock(target, (ws) => ws.terminate());
      return done(code, code === 1006);
    }
  }
}
