// The rendezvous store server: a key-value map in one process (rank 0 or the launcher) that
// the workers reach over WebSocket. Waiting gets are parked server-side and answered when the
// key appears, so clients never poll (kv.ts). The server also keeps the rank claims of `join`
// (membership.ts): a second live worker with the same rank, a different world size, or a
// worker refused for another token breaks the rendezvous for everyone, at once. A client's wills
// (keys and values; one per key, replaced by its next `will` of that key) are set when its
// connection closes.
import { unpack } from 'msgpackr';
import { ConfigError, toWire } from '../errors.ts';
import { getLogger, type Logger } from '@zeroring/core';
import { CloseCode, type Conn } from '../transport/conn.ts';
import { listen } from '../transport/listener.ts';
import { KeyValue, reply } from './kv.ts';
import { Membership } from './membership.ts';
import { isStoreValue, STORE_MAX_PAYLOAD, type StoreRequest, type StoreValue } from './protocol.ts';

export interface StoreServerOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  token: string;
  authTimeoutMs?: number;
  /**
   * How long a forming rendezvous still waits for a rank after the store refused a worker that
   * claimed it with a wrong proof of the token, before it breaks with an AuthError (default 5000).
   */
  wrongTokenGraceMs?: number;
  log?: Logger;
}

export const DEFAULT_WRONG_TOKEN_GRACE_MS = 5000;

export interface StoreServer {
  readonly host: string;
  readonly port: number;
  /** Lets the process exit while only the store is left open. */
  setRef(on: boolean): void;
  close(): Promise<void>;
}

export async function startStoreServer(o: StoreServerOptions): Promise<StoreServer> {
  const log = o.log ?? getLogger({ component: 'store' });
  const kv = new KeyValue();
  const members = new Membership(o.wrongTokenGraceMs ?? DEFAULT_WRONG_TOKEN_GRACE_MS, log, `${o.host}:${o.port}`);
  const wills = new Map<Conn, Map<string, StoreValue>>();
  const listener = await listen({
    host: o.host,
    port: o.port,
    token: o.token,
    purpose: 'store',
    maxPayload: STORE_MAX_PAYLOAD,
    authTimeoutMs: o.authTimeoutMs ?? 10_000,
    log,
    onWrongProof: (remote, rank) => members.onWrongProof(remote, rank),
    onConn: (c) => {
      c.setHandler((raw) => handleRequest(c, raw, { kv, members, wills }));
      c.onClose(() => {
        kv.dropClient(c);
        const mine = wills.get(c);
        wills.delete(c);
        for (const [k, v] of mine ?? []) {
          kv.put(k, v);
          kv.wake(k);
        }
      });
    },
  });
  log.debug({ host: o.host, port: listener.port }, 'store listening');
  members.where = `${o.host}:${listener.port}`;
  return {
    host: o.host,
    port: listener.port,
    setRef: (on) => listener.setRef(on),
    close: () => {
      members.stop();
      return listener.close();
    },
  };
}

interface ServerState {
  kv: KeyValue;
  members: Membership;
  wills: Map<Conn, Map<string, StoreValue>>;
}

/** One request of an authenticated client; anything malformed closes that client's connection. */
function handleRequest(c: Conn, raw: Buffer, { kv, members, wills }: ServerState): void {
  let m: StoreRequest;
  try {
    m = unpack(raw) as StoreRequest;
  } catch {
    return c.fail(CloseCode.malformed, 'undecodable store request');
  }
  if (typeof m !== 'object' || m === null || typeof m.i !== 'number') {
    return c.fail(CloseCode.malformed, 'store request without id');
  }
  const bad = (what: string) => c.fail(CloseCode.malformed, `bad store request: ${what}`);
  switch (m.c) {
    case 'set':
      if (typeof m.k !== 'string' || !isStoreValue(m.v)) return bad('set needs a string key and a value');
      kv.put(m.k, m.v);
      reply(c, { i: m.i, v: true });
      return kv.wake(m.k);
    case 'get':
    case 'wait': {
      const keys = m.c === 'get' ? [m.k] : m.ks;
      if (!Array.isArray(keys) || !keys.every((k) => typeof k === 'string')) return bad(`${m.c} needs string keys`);
      return kv.waitFor({ conn: c, id: m.i, keys, kind: m.c });
    }
    case 'check':
      if (!Array.isArray(m.ks)) return bad('check needs keys');
      return reply(c, { i: m.i, v: kv.hasAll(m.ks) });
    case 'add': {
      if (typeof m.k !== 'string' || typeof m.n !== 'number') return bad('add needs a key and a number');
      const cur = kv.get(m.k) ?? 0;
      if (typeof cur !== 'number') {
        const e = new ConfigError(`store key '${m.k}' holds a ${typeof cur}, expected a counter`);
        return reply(c, { i: m.i, e: toWire(e) });
      }
      kv.put(m.k, cur + m.n);
      reply(c, { i: m.i, v: cur + m.n });
      return kv.wake(m.k);
    }
    case 'del':
      if (typeof m.k !== 'string') return bad('del needs a key');
      return reply(c, { i: m.i, v: kv.delete(m.k) });
    case 'cancel':
      return kv.cancel(c, m.target);
    case 'join': {
      if (typeof m.p !== 'string' || !Number.isInteger(m.r) || !Number.isInteger(m.w)) {
        return bad('join needs prefix, rank, world size');
      }
      const e = members.join(c, m.p, m.r, m.w);
      return reply(c, e ? { i: m.i, e } : { i: m.i, v: true });
    }
    case 'will':
      if (typeof m.k !== 'string' || (m.v !== null && !isStoreValue(m.v))) return bad('will needs a key and a value');
      if (!wills.has(c)) wills.set(c, new Map());
      if (m.v === null) wills.get(c)!.delete(m.k);
      else wills.get(c)!.set(m.k, m.v);
      return reply(c, { i: m.i, v: true });
    default:
      return bad(`unknown command ${String((m as { c: unknown }).c)}`);
  }
}
