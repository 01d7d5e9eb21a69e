// Messages of the rendezvous store (msgpack over an authenticated WebSocket), the operations
// torch's TCPStore offers: set, get (waits for the key), add (atomic counter), wait, check,
// delete, plus `join`, with which a worker claims its rank so that two workers claiming one
// rank, or disagreeing on the world size, are told so at once instead of timing out, and `will`
// (MQTT's last will): keys the store sets when the client's connection closes, so that whoever
// waits on it learns at once that the client is gone (the elastic launchers use it).
import type { WireError } from '../errors.ts';

export type StoreValue = string | number | Uint8Array;

export type StoreRequest =
  | { i: number; c: 'set'; k: string; v: StoreValue }
  | { i: number; c: 'get'; k: string }
  | { i: number; c: 'add'; k: string; n: number }
  | { i: number; c: 'wait'; ks: string[] }
  | { i: number; c: 'check'; ks: string[] }
  | { i: number; c: 'del'; k: string }
  | { i: number; c: 'cancel'; target: number }
  | { i: number; c: 'join'; p: string; r: number; w: number }
  | { i: number; c: 'will'; k: string; v: StoreValue | null };

export type StoreResponse = { i: number; v?: StoreValue | boolean | null; e?: WireError };

/** Sent unasked when the whole rendezvous is broken (e.g. a rank claimed twice). */
export type StorePush = { t: 'fatal'; e: WireError };

export const STORE_MAX_PAYLOAD = 4 * 1024 * 1024;

export function isStoreValue(v: unknown): v is StoreValue {
  return typeof v === 'string' || typeof v === 'number' || v instanceof Uint8Array;
}
