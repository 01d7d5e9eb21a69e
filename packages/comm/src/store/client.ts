// Client of the rendezvous store (store/server.ts). Connecting retries while nothing listens
// yet (rank 0 may start after the others), but gives up at once on a wrong token or on a port
// that is not a zeroring store. get/wait take a timeout and then raise CommTimeoutError.
import { pack, unpack } from 'msgpackr';
import { AuthError, CommTimeoutError, ConfigError, fromWire, ZeroringError } from '../errors.ts';
import { getLogger, type Logger } from '../logger.ts';
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
  log?: Logger;
}

interface Pending {
  resolve: (v: StoreResponse['v']) => void;
  reject: (e: Error) => void;
  timer?: NodeJS.Timeout;
}

type Body = Record<string, unknown> & { c: string };

export class StoreClient {
  private nextId = 1;
  private pending = new Map<number, Pending>();
  private failure: Error | undefined;
  /** Called when the store reports the rendezvous broken or the connection is lost. */
  onFailure: ((e: Error) => void) | undefined;

  private constructor(
    private readonly conn: Conn,
    readonly host: string,
    readonly port: number,
    readonly timeoutMs: number,
  ) {
    conn.setHandler((raw) => this.onMessage(raw));
    conn.onClose((code, reason) => {
      const e = new ZeroringError(`lost the rendezvous store at ${host}:${port} (code ${code}${reason ? `: ${reason}` : ''})`);
      this.fail(e);
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
        return new StoreClient(conn, o.host, o.port, timeoutMs);
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
    return this.request({ c: 'set', k: key, v: value }).then(() => undefined);
  }

  /** Waits until the key exists (or the timeout passes) and returns its value. */
  get(key: string, timeoutMs = this.timeoutMs): Promise<StoreValue> {
    return this.request({ c: 'get', k: key }, timeoutMs, `get('${key}')`) as Promise<StoreValue>;
  }

  /** Atomically adds delta to a counter (absent = 0) and returns the new value. */
  add(key: string, delta: number): Promise<number> {
    return this.request({ c: 'add', k: key, n: delta }) as Promise<number>;
  }

  wait(keys: string[], timeoutMs = this.timeoutMs): Promise<void> {
    return this.request({ c: 'wait', ks: keys }, timeoutMs, `wait(${keys.join(', ')})`).then(() => undefined);
  }

  check(keys: string[]): Promise<boolean> {
    return this.request({ c: 'check', ks: keys }) as Promise<boolean>;
  }

  delete(key: string): Promise<boolean> {
    return this.request({ c: 'del', k: key }) as Promise<boolean>;
  }

  /** Claims a rank in a rendezvous group (see server.ts). */
  join(prefix: string, rank: number, worldSize: number): Promise<void> {
    return this.request({ c: 'join', p: prefix, r: rank, w: worldSize }).then(() => undefined);
  }

  setRef(on: boolean): void {
    this.conn.setRef(on);
  }

  close(): void {
    this.failure ??= new ZeroringError('store client closed');
    this.conn.close(CloseCode.normal, 'done');
  }

  private request(body: Body, timeoutMs?: number, what?: string): Promise<StoreResponse['v']> {
    if (this.failure) return Promise.reject(this.failure);
    const i = this.nextId++;
    return new Promise((resolve, reject) => {
      const p: Pending = { resolve, reject };
      if (timeoutMs !== undefined) {
        p.timer = setTimeout(() => {
          this.pending.delete(i);
          this.conn.send(pack({ i: this.nextId++, c: 'cancel', target: i }));
          reject(new CommTimeoutError(`store ${what} at ${this.host}:${this.port} timed out after ${timeoutMs} ms`, timeoutMs));
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
    if ('t' in m && m.t === 'fatal') return this.fail(fromWire(m.e));
    const r = m as StoreResponse;
    const p = this.pending.get(r.i);
    if (!p) return;
    this.pending.delete(r.i);
    clearTimeout(p.timer);
    if (r.e) p.reject(fromWire(r.e));
    else p.resolve(r.v);
  }

  private fail(e: Error): void {
    const first = !this.failure;
    this.failure ??= e;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(e);
    }
    this.pending.clear();
    if (first) this.onFailure?.(e);
  }
}
