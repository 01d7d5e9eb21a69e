// Rendezvous: find the rendezvous store, claim our rank, build the ring. The store lives at
// MASTER_ADDR:MASTER_PORT; rank 0 hosts it in-process unless told someone else does (a launcher),
// and fails with a ConfigError if that port is taken. Every rank then dials it. With a loopback
// MASTER_ADDR everything binds to 127.0.0.1; otherwise ring listeners bind to ZERORING_BIND_ADDR
// or to the interface that routes to the master. Each rank also publishes its node (and its
// hierarchical all-reduce setting), so that every rank learns the node layout (node-layout.ts).
// Details (bind and advertised addresses): docs/internals.md#rendezvous
import type { ResolvedOptions } from './env.ts';
import { isLoopback } from './env.ts';
import { ZeroringError } from './errors.ts';
import type { Logger } from '@zeroring/core';
import type { NodeRecord } from './group/node-layout.ts';
import { StoreClient } from './store/client.ts';
import { startStoreServer, type StoreServer } from './store/server.ts';
import { RingTransport } from './transport/ring.ts';

export interface Rendezvous {
  ring: RingTransport;
  store: StoreClient;
  storeServer: StoreServer | null;
  /** Store keys of this rendezvous start with it (subgroups and point-to-point links add to it). */
  prefix: string;
  /** Where this rank's listeners bind, and the address it publishes for them. */
  bindHost: string;
  advertiseHost: string;
  /** Every rank's node and setting, by rank. */
  nodes: NodeRecord[];
}

function isWildcard(a: string): boolean {
  return a === '0.0.0.0' || a === '::' || a === '[::]';
}

export async function rendezvous(o: ResolvedOptions, log: Logger): Promise<Rendezvous> {
  const deadline = Date.now() + o.rendezvousTimeoutMs;
  const left = () => Math.max(1, deadline - Date.now());
  const loop = isLoopback(o.masterAddr);
  let storeServer: StoreServer | null = null;
  if (o.rank === 0 && o.storeHostedBy === 'rank0') {
    const host = loop ? o.masterAddr : (o.bindAddr ?? o.masterAddr);
    storeServer = await startStoreServer({
      host,
      port: o.masterPort,
      token: o.token,
      log: log.child({ component: 'store' }),
    });
    log.debug({ host, port: storeServer.port }, 'hosting the rendezvous store');
  }
  let store: StoreClient | undefined;
  try {
    store = await StoreClient.connect({
      host: o.masterAddr,
      port: o.masterPort,
      token: o.token,
      rank: o.rank,
      timeoutMs: o.rendezvousTimeoutMs,
      hostRank: o.storeHostedBy === 'rank0' ? 0 : null,
      log,
    });
    const s = store;
    s.activity = 'rendezvous';
    // The store may declare the rendezvous broken at any point (e.g. a rank claimed twice).
    const broken = new Promise<never>((_, rej) => (s.onFailure = rej));
    broken.catch(() => undefined);
    const prefix = `g${o.restartCount}/`;
    let bindHost = '';
    let advertiseHost = '';
    const steps = async (): Promise<{ ring: RingTransport; nodes: NodeRecord[] }> => {
      await s.join(prefix, o.rank, o.worldSize);
      const record: NodeRecord = { node: o.node, hier: o.hierarchical };
      await s.set(`${prefix}node/${o.rank}`, JSON.stringify(record));
      const local = s.localAddress ?? '127.0.0.1';
      bindHost = loop ? '127.0.0.1' : (o.bindAddr ?? local);
      advertiseHost = o.advertiseAddr ?? (isWildcard(bindHost) ? local : bindHost);
      const ring = await RingTransport.establish({
        rank: o.rank,
        worldSize: o.worldSize,
        token: o.token,
        store: s,
        prefix,
        bindHost,
        advertiseHost,
        timeoutMs: left(),
        log,
        abort: broken,
        sharedMemory: o.sharedMemory,
        chunkBytes: o.chunkBytes,
      });
      try {
        // Read before the barrier: once past it, rank 0 may close the store (a layout refused).
        const keys = Array.from({ length: o.worldSize }, (_, r) => s.get(`${prefix}node/${r}`, left()));
        const nodes = (await Promise.race([Promise.all(keys), broken])).map((v) => JSON.parse(String(v)) as NodeRecord);
        // Everyone has its ring before anyone leaves: after this the store is no longer needed.
        if ((await s.add(`${prefix}ready`, 1)) === o.worldSize) await s.set(`${prefix}ready/all`, 1);
        await Promise.race([s.wait([`${prefix}ready/all`], left()), broken]);
        return { ring, nodes };
      } catch (e) {
        await ring.close();
        throw e;
      }
    };
    const { ring, nodes } = await Promise.race([steps(), broken]);
    // From here on the ring notices a dead rank 0 by itself, and rank 0 may leave first after
    // its last collective: losing the store only fails later store calls (PeerLostError).
    s.activity = null;
    s.onFailure = (e) => log.debug({ err: e.message }, 'store connection ended');
    return { ring, store: s, storeServer, prefix, bindHost, advertiseHost, nodes };
  } catch (e) {
    store?.close();
    await storeServer?.close();
    throw e instanceof ZeroringError
      ? e
      : new ZeroringError(`rendezvous failed on rank ${o.rank}: ${(e as Error).message}`, { cause: e });
  }
}
