// The rendezvous store with real sockets in one process: TCPStore semantics, the token
// handshake, and the errors a wrong MASTER_ADDR/MASTER_PORT or token produce.
import { createServer } from 'node:http';
import { connect as tcpConnect } from 'node:net';
import { pack } from 'msgpackr';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { AuthError, CommTimeoutError, ConfigError } from '../src/errors.ts';
import { StoreClient } from '../src/store/client.ts';
import { startStoreServer, type StoreServer } from '../src/store/server.ts';

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0)) await f();
});

async function store(token = 'tok', wrongTokenGraceMs?: number): Promise<StoreServer> {
  const s = await startStoreServer({ host: '127.0.0.1', port: 0, token, wrongTokenGraceMs });
  cleanup.push(() => s.close());
  return s;
}

async function client(port: number, token = 'tok', rank = -1): Promise<StoreClient> {
  const c = await StoreClient.connect({ host: '127.0.0.1', port, token, rank, timeoutMs: 5000 });
  cleanup.push(() => c.close());
  return c;
}

describe('rendezvous store', () => {
  it('set/get/add/wait/check/delete, get waits for the key', async () => {
    const s = await store();
    const a = await client(s.port);
    const b = await client(s.port);
    const later = b.get('k');
    await a.set('k', 'v');
    expect(await later).toBe('v');
    await a.set('bin', new Uint8Array([1, 2, 3]));
    expect(Array.from((await b.get('bin')) as Uint8Array)).toEqual([1, 2, 3]);
    const sums = await Promise.all([a.add('n', 1), b.add('n', 1), a.add('n', 5)]);
    expect(Math.max(...sums)).toBe(7);
    expect(new Set(sums).size).toBe(3);
    const waited = b.wait(['x', 'y']);
    await a.set('x', 1);
    expect(await b.check(['x', 'y'])).toBe(false);
    await a.set('y', 2);
    await waited;
    expect(await b.check(['x', 'y'])).toBe(true);
    expect(await a.delete('x')).toBe(true);
    expect(await b.check(['x'])).toBe(false);
    await expect(a.add('k', 1)).rejects.toThrow("store key 'k' holds a string, expected a counter");
  });

  it('get times out with CommTimeoutError, and the connection stays usable', async () => {
    const s = await store();
    const a = await client(s.port);
    await expect(a.get('never', 200)).rejects.toThrow(CommTimeoutError);
    await a.set('after', 1);
    expect(await a.get('after')).toBe(1);
  });

  it("a client's wills are set when its connection closes, one per key, withdrawn by null", async () => {
    const s = await store();
    const watcher = await client(s.port);
    const a = await client(s.port);
    await a.will('gone/a', 'first');
    await a.will('gone/a', 'a left');
    await a.will('round/end', 'a ended it');
    const b = await client(s.port);
    await b.will('gone/b', 'b left');
    await b.will('gone/b', null);
    const seen = watcher.get('gone/a', 5000);
    b.close();
    a.close();
    expect(await seen).toBe('a left');
    expect(await watcher.get('round/end', 5000)).toBe('a ended it');
    // b closed first; give the store a moment more to have handled it: its cleared will set nothing.
    await new Promise((r) => setTimeout(r, 200));
    expect(await watcher.check(['gone/b'])).toBe(false);
  });

  it('a wrong token is refused with AuthError, never sent in the clear', async () => {
    const s = await store('right');
    await expect(
      StoreClient.connect({ host: '127.0.0.1', port: s.port, token: 'wrong', timeoutMs: 3000 }),
    ).rejects.toThrow(AuthError);
    // ... and the store still serves the right token.
    const ok = await client(s.port, 'right');
    await ok.set('a', 1);
  });

  it('nothing listening: CommTimeoutError that names the address and the variables to check', async () => {
    const probe = await store();
    const port = probe.port;
    await probe.close();
    const t0 = Date.now();
    const e = await StoreClient.connect({ host: '127.0.0.1', port, token: 't', timeoutMs: 400 }).catch(
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(CommTimeoutError);
    expect((e as Error).message).toContain(`127.0.0.1:${port}`);
    expect((e as Error).message).toContain('MASTER_ADDR/MASTER_PORT');
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  it('a port that is not a zeroring store: ConfigError at once', async () => {
    const http = createServer((_q, r) => r.end('hi'));
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', () => r()));
    cleanup.push(() => new Promise((r) => http.close(r)));
    const port = (http.address() as { port: number }).port;
    await expect(StoreClient.connect({ host: '127.0.0.1', port, token: 't', timeoutMs: 3000 })).rejects.toThrow(
      ConfigError,
    );
  });

  it('a taken MASTER_PORT: ConfigError naming the port', async () => {
    const s = await store();
    await expect(startStoreServer({ host: '127.0.0.1', port: s.port, token: 'x' })).rejects.toThrow(
      `127.0.0.1:${s.port}: the port is already in use`,
    );
  });

  it('two live claims of one rank break the rendezvous for both', async () => {
    const s = await store();
    const a = await client(s.port, 'tok', 1);
    const b = await client(s.port, 'tok', 1);
    const pending = a.get('never').catch((e: unknown) => e);
    await a.join('g0/', 1, 2);
    await expect(b.join('g0/', 1, 2)).rejects.toThrow('two workers claim RANK=1');
    expect(await pending).toBeInstanceOf(ConfigError);
  });

  it('a rank may be claimed again once its previous holder is gone (restart)', async () => {
    const s = await store();
    const a = await StoreClient.connect({ host: '127.0.0.1', port: s.port, token: 'tok', rank: 0, timeoutMs: 3000 });
    await a.join('g0/', 0, 2);
    a.close();
    const b = await client(s.port, 'tok', 0);
    // The server notices a's close asynchronously; retry briefly.
    for (let i = 0; ; i++) {
      const ok = await b.join('g0/', 0, 2).then(
        () => true,
        () => false,
      );
      if (ok) break;
      if (i > 50) throw new Error('rank 0 never released');
      await new Promise((r) => setTimeout(r, 20));
    }
  });
});

/** Opens a WebSocket to the store, waits for its hello, sends `frame`, resolves with the close code. */
function knock(port: number, frame: Buffer | string): Promise<number> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/`, { perMessageDeflate: false });
    ws.once('message', () => ws.send(frame));
    ws.on('error', () => undefined);
    ws.on('close', (code) => resolve(code));
  });
}

/** A handshake in the protocol's own shape whose MAC is made up, claiming `rank`. */
function forgedAuth(rank: number): Buffer {
  return pack({ t: 'auth', nonce: Buffer.alloc(16, 1), rank, mac: Buffer.alloc(32, 2) });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A client with `token` (closed by the test's cleanup if it gets in). */
async function connectWith(token: string, port: number, rank = -1): Promise<StoreClient> {
  const c = await StoreClient.connect({ host: '127.0.0.1', port, token, rank, timeoutMs: 3000 });
  cleanup.push(() => c.close());
  return c;
}

/** The first failure the store reports to this client (or null if none comes). */
function failureOf(c: StoreClient): { get: () => Error | null } {
  let got: Error | null = null;
  c.onFailure = (e) => (got ??= e);
  return { get: () => got };
}

describe('a worker refused for its token, while the world forms', () => {
  it('breaks the rendezvous for every member (AuthError) if its rank is still missing after the grace', async () => {
    const s = await store('tok', 300);
    const a = await client(s.port, 'tok', 0);
    const failed = failureOf(a);
    const pending = a.get('g0/addr/1').catch((e: unknown) => e);
    await a.join('g0/', 0, 2);
    const refused = await connectWith('other', s.port, 1).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(AuthError);
    expect((refused as Error).message).toBe(
      `the rendezvous store at 127.0.0.1:${s.port} refused this worker's ZERORING_TOKEN: the tokens differ ` +
        '(expected the same ZERORING_TOKEN on every worker of the job)',
    );
    const e = await pending;
    expect(e).toBeInstanceOf(AuthError);
    expect((e as Error).message).toMatch(
      new RegExp(
        `^the rendezvous store at 127\\.0\\.0\\.1:${s.port} ` +
          'refused a worker at 127\\.0\\.0\\.1:\\d+ claiming RANK=1: ' +
          "its ZERORING_TOKEN differs from the store's, so the world of WORLD_SIZE=2 cannot form",
      ),
    );
    expect(failed.get()).toBeInstanceOf(AuthError);
    // A worker that comes later is told at once instead of waiting for a world that cannot form.
    const late = await client(s.port, 'tok', 1);
    await expect(late.join('g0/', 1, 2)).rejects.toThrow(/claiming RANK=1: its ZERORING_TOKEN differs/);
  });

  it('strangers do not: garbage, text, raw TCP, no rank, or a forged claim of a rank that is present', async () => {
    const s = await store('tok', 200);
    const a = await client(s.port, 'tok', 0);
    const failed = failureOf(a);
    await a.join('g0/', 0, 3);
    expect(await knock(s.port, Buffer.from('not msgpack \xff'))).toBe(4002);
    expect(await knock(s.port, 'hello?')).toBe(4002);
    expect(await knock(s.port, forgedAuth(0))).toBe(4001);
    expect(await knock(s.port, forgedAuth(7))).toBe(4001); // out of range for WORLD_SIZE=3
    await expect(connectWith('other', s.port)).rejects.toThrow(AuthError);
    await new Promise<void>((r) => {
      const t = tcpConnect(s.port, '127.0.0.1', () => t.end('\x00\x01garbage\r\n\r\n'));
      t.on('error', () => r()).on('close', () => r());
    });
    await sleep(600);
    expect(failed.get()).toBeNull();
    await a.set('still', 'serving');
    expect(await a.get('still')).toBe('serving');
  });

  it('the right worker for a refused rank may come in the grace; later refusals do not count', async () => {
    const s = await store('tok', 1500);
    const a = await client(s.port, 'tok', 0);
    const failed = failureOf(a);
    await a.join('g0/', 0, 2);
    expect(await knock(s.port, forgedAuth(1))).toBe(4001);
    const b = await client(s.port, 'tok', 1);
    const bFailed = failureOf(b);
    await b.join('g0/', 1, 2);
    // Formed: a worker with another token claiming a rank (even a missing one, once someone
    // leaves) is refused and ignored.
    b.close();
    await expect(connectWith('other', s.port, 1)).rejects.toThrow(AuthError);
    await sleep(2000);
    expect(failed.get()).toBeNull();
    expect(bFailed.get()).toBeNull();
    await a.set('k', 1);
  });
});
