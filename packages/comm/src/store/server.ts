// The rendezvous store server: a key-value map in one process (rank 0 or the launcher) that
// the workers reach over WebSocket. Waiting gets are parked server-side and answered when the
// key appears, so clients never poll. The server also keeps the rank claims of `join`: a
// second live worker with the same rank, or a different world size, breaks the rendezvous for
// everyone with a ConfigError that names both workers.
import { pack, unpack } from 'msgpackr';
import { ConfigError, toWire, type ZeroringError } from '../errors.ts';
import { getLogger, type Logger } from '../logger.ts';
import { CloseCode, type Conn } from '../transport/conn.ts';
import { listen, type Listener } from '../transport/listener.ts';
import { isStoreValue, STORE_MAX_PAYLOAD, type StoreRequest, type StoreResponse, type StoreValue } from './protocol.ts';

export interface StoreServerOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  token: string;
  authTimeoutMs?: number;
  log?: Logger;
}

export interface StoreServer {
  readonly host: string;
  readonly port: number;
  /** Lets the process exit while only the store is left open. */
  setRef(on: boolean): void;
  close(): Promise<void>;
}

interface Waiter {
  conn: Conn;
  id: number;
  keys: string[];
  /** 'get' answers with the value of keys[0]; 'wait' with true. */
  kind: 'get' | 'wait';
}

interface Group {
  worldSize: number;
  claims: Map<number, Conn>;
}

export async function startStoreServer(o: StoreServerOptions): Promise<StoreServer> {
  const log = o.log ?? getLogger({ component: 'store' });
  const data = new Map<string, StoreValue>();
  const waiters = new Set<Waiter>();
  const groups = new Map<string, Group>();

  const reply = (c: Conn, r: StoreResponse) => c.send(pack(r));

  const satisfied = (w: Waiter) => w.keys.every((k) => data.has(k));
  const answer = (w: Waiter) => reply(w.conn, { i: w.id, v: w.kind === 'get' ? data.get(w.keys[0]!)! : true });

  const onKeySet = (key: string) => {
    for (const w of waiters) {
      if (w.keys.includes(key) && satisfied(w)) {
        waiters.delete(w);
        answer(w);
      }
    }
  };

  const breakGroup = (g: Group, e: ZeroringError, also: Conn[]) => {
    log.error({ err: e.message }, 'rendezvous broken');
    const msg = pack({ t: 'fatal', e: toWire(e) });
    for (const c of new Set([...g.claims.values(), ...also])) c.send(msg);
  };

  const join = (c: Conn, prefix: string, rank: number, worldSize: number): StoreResponse['e'] | undefined => {
    let g = groups.get(prefix);
    if (!g) groups.set(prefix, (g = { worldSize, claims: new Map() }));
    if (g.claims.size === 0) g.worldSize = worldSize;
    if (worldSize !== g.worldSize) {
      const e = new ConfigError(`worker at ${c.remote} says WORLD_SIZE=${worldSize} but the other workers say WORLD_SIZE=${g.worldSize} (expected the same world size on every worker)`);
      breakGroup(g, e, [c]);
      return toWire(e);
    }
    const prev = g.claims.get(rank);
    if (prev && !prev.closed) {
      const e = new ConfigError(`two workers claim RANK=${rank}: ${prev.remote} and ${c.remote} (expected each rank 0..${worldSize - 1} exactly once)`);
      breakGroup(g, e, [c]);
      return toWire(e);
    }
    g.claims.set(rank, c);
    c.onClose(() => {
      if (g.claims.get(rank) === c) g.claims.delete(rank);
    });
    return undefined;
  };

  const handle = (c: Conn, raw: Buffer) => {
    let m: StoreRequest;
    try {
      m = unpack(raw) as StoreRequest;
    } catch {
      return c.fail(CloseCode.malformed, 'undecodable store request');
    }
    if (typeof m !== 'object' || m === null || typeof m.i !== 'number') return c.fail(CloseCode.malformed, 'store request without id');
    const bad = (what: string) => c.fail(CloseCode.malformed, `bad store request: ${what}`);
    switch (m.c) {
      case 'set':
        if (typeof m.k !== 'string' || !isStoreValue(m.v)) return bad('set needs a string key and a value');
        data.set(m.k, m.v);
        reply(c, { i: m.i, v: true });
        return onKeySet(m.k);
      case 'get':
      case 'wait': {
        const keys = m.c === 'get' ? [m.k] : m.ks;
        if (!Array.isArray(keys) || !keys.every((k) => typeof k === 'string')) return bad(`${m.c} needs string keys`);
        const w: Waiter = { conn: c, id: m.i, keys, kind: m.c };
        if (satisfied(w)) return answer(w);
        waiters.add(w);
        return;
      }
      case 'check':
        if (!Array.isArray(m.ks)) return bad('check needs keys');
        return reply(c, { i: m.i, v: m.ks.every((k) => data.has(k)) });
      case 'add': {
        if (typeof m.k !== 'string' || typeof m.n !== 'number') return bad('add needs a key and a number');
        const cur = data.get(m.k) ?? 0;
        if (typeof cur !== 'number') return reply(c, { i: m.i, e: toWire(new ConfigError(`store key '${m.k}' holds a ${typeof cur}, expected a counter`)) });
        data.set(m.k, cur + m.n);
        reply(c, { i: m.i, v: cur + m.n });
        return onKeySet(m.k);
      }
      case 'del':
        if (typeof m.k !== 'string') return bad('del needs a key');
        return reply(c, { i: m.i, v: data.delete(m.k) });
      case 'cancel':
        for (const w of waiters) if (w.conn === c && w.id === m.target) waiters.delete(w);
        return;
      case 'join': {
        if (typeof m.p !== 'string' || !Number.isInteger(m.r) || !Number.isInteger(m.w)) return bad('join needs prefix, rank, world size');
        const e = join(c, m.p, m.r, m.w);
        return reply(c, e ? { i: m.i, e } : { i: m.i, v: true });
      }
      default:
        return bad(`unknown command ${String((m as { c: unknown }).c)}`);
    }
  };

  let listener: Listener | undefined;
  listener = await listen({
    host: o.host,
    port: o.port,
    token: o.token,
    purpose: 'store',
    maxPayload: STORE_MAX_PAYLOAD,
    authTimeoutMs: o.authTimeoutMs ?? 10_000,
    log,
    onConn: (c) => {
      c.setHandler((raw) => handle(c, raw));
      c.onClose(() => {
        for (const w of waiters) if (w.conn === c) waiters.delete(w);
      });
    },
  });
  log.debug({ host: o.host, port: listener.port }, 'store listening');
  const l = listener;
  return {
    host: o.host,
    port: l.port,
    setRef: (on) => l.setRef(on),
    close: () => l.close(),
  };
}
