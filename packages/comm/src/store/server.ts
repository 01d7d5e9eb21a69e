// The rendezvous store server: a key-value map in one process (rank 0 or the launcher) that
// the workers reach over WebSocket. Waiting gets are parked server-side and answered when the
// key appears, so clients never poll. The server also keeps the rank claims of `join`: a
// second live worker with the same rank, or a different world size, breaks the rendezvous for
// everyone with a ConfigError that names both workers; a worker refused for another token
// breaks it with an AuthError (see judgeRefusals).
import { pack, unpack } from 'msgpackr';
import { AuthError, ConfigError, toWire, type ZeroringError } from '../errors.ts';
import { getLogger, type Logger } from '@zeroring/core';
import { CloseCode, type Conn } from '../transport/conn.ts';
import { listen, type Listener } from '../transport/listener.ts';
import { isStoreValue, STORE_MAX_PAYLOAD, type StoreRequest, type StoreResponse, type StoreValue } from './protocol.ts';

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

/** Refusals kept for judging: a few dozen covers any job; a knocking stranger cannot grow it. */
const MAX_REFUSALS = 64;

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
  /** When the first of the current claims was made: refusals long before belong to another job. */
  startedAt: number;
  /** Every rank has joined once: the world exists, and a refusal from now on is a stranger's. */
  formed: boolean;
  /** Why the rendezvous broke; a worker joining later gets the same error at once. */
  broken: ZeroringError | null;
}

/** A client refused for a wrong proof of the token, and the rank that it claimed. */
interface Refusal {
  remote: string;
  rank: number;
  at: number;
}

export async function startStoreServer(o: StoreServerOptions): Promise<StoreServer> {
  const log = o.log ?? getLogger({ component: 'store' });
  const graceMs = o.wrongTokenGraceMs ?? DEFAULT_WRONG_TOKEN_GRACE_MS;
  const data = new Map<string, StoreValue>();
  const waiters = new Set<Waiter>();
  const groups = new Map<string, Group>();
  const refusals: Refusal[] = [];
  let judgeTimer: NodeJS.Timeout | undefined;
  let judgeAt = Infinity;
  /** Where the store listens, for the errors it gives; set once it does. */
  let where = `${o.host}:${o.port}`;

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
    // Every member reports it (the store's own rank too): here it is only a trace.
    log.debug({ err: e.message }, 'rendezvous broken');
    g.broken = e;
    const msg = pack({ t: 'fatal', e: toWire(e) });
    for (const c of new Set([...g.claims.values(), ...also])) c.send(msg);
  };

  const scheduleJudge = (at: number) => {
    if (at >= judgeAt) return;
    clearTimeout(judgeTimer);
    judgeAt = at;
    judgeTimer = setTimeout(() => {
      judgeTimer = undefined;
      judgeAt = Infinity;
      judgeRefusals();
    }, Math.max(0, at - Date.now()));
    // Never what keeps a process alive: the members' own connections do that.
    judgeTimer.unref();
  };

  // A client that speaks the protocol and fails only the HMAC proof is, while a world forms,
  // almost always one of its workers started with another ZERORING_TOKEN. It was told so and
  // exits; the world can then never form, and the members would wait out the rendezvous timeout
  // (minutes) only to blame the address or the world size. So such a refusal breaks the forming
  // rendezvous with an AuthError for every member, under conditions that keep strangers from
  // using it against a healthy job:
  // - garbage, text frames, silence or raw TCP never count, only a well-formed wrong proof;
  // - only while the group forms: once every rank has joined, a refusal harms nobody;
  // - only for a rank the world still lacks (in range, not held by a live member), so a forged
  //   claim of a present rank, or of none (-1, a tool), changes nothing;
  // - only once that rank is still missing `graceMs` after the refusal, so that the right worker
  //   for it (a straggler, or one restarted with the right token) can still take it.
  // A stranger who knows the protocol and claims a missing rank while a world forms can still
  // make it fail: that is the price of failing fast, and the error names the address it came
  // from. The last condition also makes the wait explicit: a few seconds, not the timeout.
  const judgeRefusals = () => {
    const now = Date.now();
    for (const g of groups.values()) {
      if (g.formed || g.broken || g.claims.size === 0) continue;
      const mine = (r: Refusal) => r.at >= g.startedAt - graceMs && r.rank < g.worldSize;
      const missing = refusals.filter((r) => mine(r) && !g.claims.has(r.rank));
      const due = missing.find((r) => now - r.at >= graceMs);
      if (due) breakGroup(g, wrongTokenError(due, g), []);
      else for (const r of missing) scheduleJudge(r.at + graceMs);
    }
  };

  const wrongTokenError = (r: Refusal, g: Group) =>
    new AuthError(
      `the rendezvous store at ${where} refused a worker at ${r.remote} claiming RANK=${r.rank}: ` +
        `its ZERORING_TOKEN differs from the store's, so the world of WORLD_SIZE=${g.worldSize} cannot form ` +
        `(expected the same ZERORING_TOKEN on every worker)`,
    );

  const onWrongProof = (remote: string, rank: number) => {
    if (rank < 0) return; // not a rank at all (a launcher or a tool): no world waits for it
    refusals.push({ remote, rank, at: Date.now() });
    if (refusals.length > MAX_REFUSALS) refusals.shift();
    judgeRefusals();
  };

  const join = (c: Conn, prefix: string, rank: number, worldSize: number): StoreResponse['e'] | undefined => {
    let g = groups.get(prefix);
    if (!g) {
      g = { worldSize, claims: new Map(), startedAt: Date.now(), formed: false, broken: null };
      groups.set(prefix, g);
    }
    if (g.broken) {
      // The members were told; a worker that comes later must not wait out the timeout either.
      c.send(pack({ t: 'fatal', e: toWire(g.broken) }));
      return toWire(g.broken);
    }
    if (g.claims.size === 0) {
      // Nobody holds a rank (all left, or none came yet): a world starts forming afresh.
      Object.assign(g, { worldSize, startedAt: Date.now(), formed: false });
    }
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
    if (g.claims.size === g.worldSize) g.formed = true;
    c.onClose(() => {
      if (g.claims.get(rank) === c) g.claims.delete(rank);
    });
    // Refusals made before this group existed may concern it.
    if (!g.formed && refusals.length > 0) judgeRefusals();
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
    onWrongProof,
    onConn: (c) => {
      c.setHandler((raw) => handle(c, raw));
      c.onClose(() => {
        for (const w of waiters) if (w.conn === c) waiters.delete(w);
      });
    },
  });
  log.debug({ host: o.host, port: listener.port }, 'store listening');
  const l = listener;
  where = `${o.host}:${l.port}`;
  return {
    host: o.host,
    port: l.port,
    setRef: (on) => l.setRef(on),
    close: () => {
      clearTimeout(judgeTimer);
      return l.close();
    },
  };
}
