// The rendezvous store with real sockets in one process: TCPStore semantics, the token
// handshake, and the errors a wrong MASTER_ADDR/MASTER_PORT or token produce.
import { createServer } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { AuthError, CommTimeoutError, ConfigError } from '../src/errors.ts';
import { StoreClient } from '../src/store/client.ts';
import { startStoreServer, type StoreServer } from '../src/store/server.ts';

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0)) await f();
});

async function store(token = 'tok'): Promise<StoreServer> {
  const s = await startStoreServer({ host: '127.0.0.1', port: 0, token });
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

  it('a wrong token is refused with AuthError, never sent in the clear', async () => {
    const s = await store('right');
    await expect(StoreClient.connect({ host: '127.0.0.1', port: s.port, token: 'wrong', timeoutMs: 3000 })).rejects.toThrow(AuthError);
    // ... and the store still serves the right token.
    const ok = await client(s.port, 'right');
    await ok.set('a', 1);
  });

  it('nothing listening: CommTimeoutError that names the address and the variables to check', async () => {
    const probe = await store();
    const port = probe.port;
    await probe.close();
    const t0 = Date.now();
    const e = await StoreClient.connect({ host: '127.0.0.1', port, token: 't', timeoutMs: 400 }).catch((x: unknown) => x);
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
    await expect(StoreClient.connect({ host: '127.0.0.1', port, token: 't', timeoutMs: 3000 })).rejects.toThrow(ConfigError);
  });

  it('a taken MASTER_PORT: ConfigError naming the port', async () => {
    const s = await store();
    await expect(startStoreServer({ host: '127.0.0.1', port: s.port, token: 'x' })).rejects.toThrow(`127.0.0.1:${s.port}: the port is already in use`);
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
      const ok = await b.join('g0/', 0, 2).then(() => true, () => false);
      if (ok) break;
      if (i > 50) throw new Error('rank 0 never released');
      await new Promise((r) => setTimeout(r, 20));
    }
  });
});
