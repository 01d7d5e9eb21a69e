// Client of the rendezvous store (store/server.ts). Connecting retries while nothing listens
// yet (rank 0 may start after the others), but gives up at once on a wrong token or on a port
// that is not a zeroring store. get/wait take a timeout and then raise CommTimeoutError.
//
// Losing the store: it lives in rank 0's process (or a launcher's), so its connection closing
// means that process died or left. Every pending and later call then rejects with a
// PeerLostError naming the host rank and the call; the loss itself is only reported through
// onFailure, never thrown from the socket's close event, because after the rendezvous the ring
// notices a dead rank 0 on its own, and a rank 0 that finished first and left is no failure.
import { pack, unpack } from 'msgpackr';
import { AuthError, CommTimeoutError, ConfigError, fromWire, PeerLostError, ZeroringError } from '../errors.ts';
import { getLogger, type Logger } from '@zeroring/core';
import { CloseCode, Conn } from '../transport/conn.ts';
import { STORE_MAX_PAYLOAD, type StorePush, type StoreResponse, type StoreValue } from './protocol.ts';

export type { StoreValue };

export interface StoreClientOptions {
  host: string;
  port: number;
  token: string;
  /** Our rank, proven in the handshake (-1 for a launcher or tool). */
  rank?: number;
  /** How long to keep trying to reach the store, and the default for get/wait. */
  timeoutMs?: number;
  /**
   * The rank whose process hosts the store (0 when rank 0 starts it), named in the
   * PeerLostError when the store goes away; null or absent: hosted outside the job (a launcher).
   */
  hostRank?: number | null;
  log?: Logger;
}

interface Pending {
  resolve: (v: StoreResponse['v']) => void;
  reject: (e: Error) => void;
  /** The call, as named in errors (e.g. "store get('k')"). */
  what: string;
  timer?: NodeJS.Timeout;
}

type Body = Record<string, unknown> & { c: string };

export class StoreClient {
  private nextId = 1;
  private pending = new Map<number, Pending>();
  private failure: Error | undefined;
  /** Why the store's connection closed (set once it did, unless we closed it): see lostError(). */
  private lost: string | undefined;
  /**
   * Called once when the store reports the rendezvous broken or the connection is lost. Must
   * not throw (it runs in a socket event); an error it throws is logged and dropped.
   */
  onFailure: ((e: Error) => void) | undefined;
  /** What the owner is doing with the store (e.g. "rendezvous"), named when the store is lost outside any call. */
  activity: string | null = null;

  private constructor(
    private readonly conn: Conn,
    readonly host: string,
    readonly port: number,
    readonly timeoutMs: number,
    /** See StoreClientOptions.hostRank. */
    readonly hostRank: number | null,
    private readonly myRank: number,
    private readonly log: Logger,
  ) {
    conn.setHandler((raw) => this.onMessage(raw));
    conn.onClose((code, reason) => {
      if (this.failure) return; // closed by us (close()) or after the store declared the rendezvous broken
      const how = `code ${code}${reason ? `: ${reason}` : ''}`;
      // 1000/1001: the host closed the store on purpose (its destroy()); anything else: it died or the network broke.
      this.lost =
        code === CloseCode.normal || code === 1001
          ? `it closed the rendezvous store at ${host}:${port} (${how})`
          : `the connection to the rendezvous store at ${host}:${port} broke (${how})`;
      this.fail((what) => this.lostError(what));
    });
  }

  static async connect(o: StoreClientOptions): Promise<StoreClient> {
    const log = o.log ?? getLogger({ component: 'store-client' });
    const timeoutMs = o.timeoutMs ?? 30_000;
    const deadline = Date.now() + timeoutMs;
    let last = '';
    let delay = 20;
    for (;;) {
      try {
        const conn = await Conn.connect(o.host, o.port, o.rank ?? -1, {
          token: o.token,
          purpose: 'store',
          log,
          authTimeoutMs: Math.max(1000, Math.min(10_000, deadline - Date.now())),
          maxPayload: STORE_MAX_PAYLOAD,
        });
        return new StoreClient(conn, o.host, o.port, timeoutMs, o.hostRank ?? null, o.rank ?? -1, log);
      } catch (e) {
        if (e instanceof AuthError || e instanceof ConfigError) throw e;
        last = (e as Error).message;
      }
      if (Date.now() + delay > deadline)
        throw new CommTimeoutError(
          `could not reach the rendezvous store at ${o.host}:${o.port} within ${timeoutMs} ms (last error: ${last}); ` +
            `is rank 0 running, and are MASTER_ADDR/MASTER_PORT the same on every worker?`,
          timeoutMs,
          o.rank ?? null,
        );
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(500, delay * 2);
    }
  }

  /** Our address as seen on the route to the store: what the other ranks can reach us at. */
  get localAddress(): string | undefined {
    return this.conn.localAddress;
  }

  set(key: string, value: StoreValue): Promise<void> {
    return this.request({ c: 'set', k: key, v: value }, undefined, `set('${key}')`).then(() => undefined);
  }

  /** Waits until the key exists (or the timeout passes) and returns its value. */
  get(key: string, timeoutMs = this.timeoutMs): Promise<StoreValue> {
    return this.request({ c: 'get', k: key }, timeoutMs, `get('${key}')`) as Promise<StoreValue>;
  }

  /** Atomically adds delta to a counter (absent = 0) and returns the new value. */
  add(key: string, delta: number): Promise<number> {
    return this.request({ c: 'add', k: key, n: delta }, undefined, `add('${key}')`) as Promise<number>;
  }

  wait(keys: string[], timeoutMs = this.timeoutMs): Promise<void> {
    return this.request({ c: 'wait', ks: keys }, timeoutMs, `wait(${keys.join(', ')})`).then(() => undefined);
  }

  check(keys: string[]): Promise<boolean> {
    return this.request({ c: 'check', ks: keys }, undefined, `check(${keys.join(', ')})`) as Promise<boolean>;
  }

  delete(key: string): Promise<boolean> {
    return this.request({ c: 'del', k: key }, undefined, `delete('${key}')`) as Promise<boolean>;
  }

  /** Claims a rank in a rendezvous group (see server.ts). */
  join(prefix: string, rank: number, worldSize: number): Promise<void> {
    return this.request(
      { c: 'join', p: prefix, r: rank, w: worldSize },
      undefined,
      `join(${prefix}, rank ${rank})`,
    ).then(() => undefined);
  }

  /**
   * The store sets `key` to `value` when this connection closes, however it closes. One will per
   * key: a later will of the same key replaces it, null withdraws it.
   */
  will(key: string, value: StoreValue | null): Promise<void> {
    return this.request({ c: 'will', k: key, v: value }, undefined, `will('${key}')`).then(() => undefined);
  }

  setRef(on: boolean): void {
    this.conn.setRef(on);
  }

  /**
   * Closes the connection; calls still waiting (a get parked for a key that never came) reject
   * with 'store client closed', so that none keeps the process alive through its timer.
   */
  close(): void {
    this.failure ??= new ZeroringError('store client closed');
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(this.failure);
    }
    this.pending.clear();
    this.conn.close(CloseCode.normal, 'done');
  }

  /**
   * The error for a call (or, with null, for the owner's current activity) once the store's
   * connection is lost: a PeerLostError naming the rank that hosted the store.
   */
  private lostError(what: string | null): PeerLostError {
    const during = what === null ? this.activity : `store ${what}`;
    if (this.hostRank !== null) return new PeerLostError(this.hostRank, during, this.lost!, this.myRank);
    // Hosted outside the job: no rank to blame, so say where the store was instead.
    const e = new PeerLostError(-1, during, this.lost!, this.myRank);
    e.message =
      `lost the rendezvous store hosted outside the job (e.g. by the launcher): ${this.lost}` +
      (during ? ` during ${during}` : ' while idle') +
      (this.myRank >= 0 ? `; noticed by rank ${this.myRank}` : '');
    return e;
  }

  private request(body: Body, timeoutMs: number | undefined, what: string): Promise<StoreResponse['v']> {
    if (this.lost !== undefined) return Promise.reject(this.lostError(what));
    if (this.failure) return Promise.reject(this.failure);
    const i = this.nextId++;
    return new Promise((resolve, reject) => {
      const p: Pending = { resolve, reject, what };
      if (timeoutMs !== undefined) {
        p.timer = setTimeout(() => {
          this.pending.delete(i);
          this.conn.send(pack({ i: this.nextId++, c: 'cancel', target: i }));
          reject(
            new CommTimeoutError(
              `store ${what} at ${this.host}:${this.port} timed out after ${timeoutMs} ms`,
              timeoutMs,
            ),
          );
        }, timeoutMs);
      }
      this.pending.set(i, p);
      this.conn.send(pack({ ...body, i }));
    });
  }

  private onMessage(raw: Buffer): void {
    let m: StoreResponse | StorePush;
    try {
      m = unpack(raw) as StoreResponse | StorePush;
    } catch {
      return this.conn.fail(CloseCode.malformed, 'undecodable store response');
    }
    if ('t' in m && m.t === 'fatal') {
      const e = fromWire(m.e);
      return this.fail(() => e);
    }
    const r = m as StoreResponse;
    const p = this.pending.get(r.i);
    if (!p) return;
    this.pending.delete(r.i);
    clearTimeout(p.timer);
    if (r.e) p.reject(fromWire(r.e));
    else p.resolve(r.v);
  }

  /** Rejects every pending call with errorFor(its name); the first failure also goes to onFailure. */
  private fail(errorFor: (what: string | null) => Error): void {
    const first = !this.failure;
    this.failure ??= errorFor(null);
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(errorFor(p.what));
    }
    this.pending.clear();
    if (!first) return;
    try {
      this.onFailure?.(this.failure);
    } catch (e) {
      this.log.error({ err: (e as Error).message }, 'store onFailure handler threw');
    }
  }
}
