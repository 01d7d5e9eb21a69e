// The store's key-value map and the requests parked on it. A get or wait whose keys are not all
// set yet is parked and answered the moment the last of them is set, so clients never poll; a
// parked request ends when its client cancels it (its own timeout) or disconnects.
import { pack } from 'msgpackr';
import type { Conn } from '../transport/conn.ts';
import type { StoreResponse, StoreValue } from './protocol.ts';

export interface Waiter {
  conn: Conn;
  id: number;
  keys: string[];
  /** 'get' answers with the value of keys[0]; 'wait' with true. */
  kind: 'get' | 'wait';
}

export function reply(c: Conn, r: StoreResponse): void {
  c.send(pack(r));
}

export class KeyValue {
  private readonly data = new Map<string, StoreValue>();
  private readonly waiters = new Set<Waiter>();

  get(key: string): StoreValue | undefined {
    return this.data.get(key);
  }

  /** Sets a key; wake(key) then answers whoever waited for it. */
  put(key: string, value: StoreValue): void {
    this.data.set(key, value);
  }

  delete(key: string): boolean {
    return this.data.delete(key);
  }

  hasAll(keys: string[]): boolean {
    return keys.every((k) => this.data.has(k));
  }

  /** Answers w now if its keys are set, else once they are. */
  waitFor(w: Waiter): void {
    if (this.hasAll(w.keys)) return this.answer(w);
    this.waiters.add(w);
  }

  /** Answers the parked requests that `key` completes. */
  wake(key: string): void {
    for (const w of this.waiters) {
      if (w.keys.includes(key) && this.hasAll(w.keys)) {
        this.waiters.delete(w);
        this.answer(w);
      }
    }
  }

  /** Drops a client's parked request (its own timeout expired). */
  cancel(conn: Conn, id: unknown): void {
    for (const w of this.waiters) if (w.conn === conn && w.id === id) this.waiters.delete(w);
  }

  /** Drops every parked request of a client that went away. */
  dropClient(conn: Conn): void {
    for (const w of this.waiters) if (w.conn === conn) this.waiters.delete(w);
  }

  private answer(w: Waiter): void {
    reply(w.conn, { i: w.id, v: w.kind === 'get' ? this.data.get(w.keys[0]!)! : true });
  }
}
