// What the ring and its shared-memory links need of the rendezvous store: to publish a value
// under a key and to read (or wait for) another rank's. Declared here, on the transport's side,
// because the store is built on the transport (its connections are transport Conns): the
// transport must not import the store back. The store's client satisfies it as it is.
export interface AddressBook {
  /** Where the book is kept, for messages: the store's host and port. */
  readonly host: string;
  readonly port: number;
  set(key: string, value: string): Promise<void>;
  /** Waits up to timeoutMs for the key to be set. */
  get(key: string, timeoutMs?: number): Promise<string | number | Uint8Array>;
  /** Whether every key is set now. */
  check(keys: string[]): Promise<boolean>;
}
