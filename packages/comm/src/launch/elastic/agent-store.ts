// The launchers' own store, at --master-addr:--master-port: the master node's launcher hosts it
// (node rank 0, or, with no --node-rank, whichever launcher finds that address on its machine
// and the port free, as torch's c10d rendezvous backend decides), every launcher is a client of
// it, the host included. The same token handshake guards it as the workers' store.
import { createServer } from 'node:net';
import { StoreClient } from '../../store/client.ts';
import { startStoreServer, type StoreServer } from '../../store/server.ts';
import type { ElasticOptions, ResolvedLaunchOptions } from '../options.ts';

export interface AgentStore {
  store: StoreClient;
  /** Set on the launcher that hosts the store: the master node's. */
  server: StoreServer | undefined;
  where: string;
  close(): Promise<void>;
}

export async function openAgentStore(o: ResolvedLaunchOptions, token: string, e: ElasticOptions): Promise<AgentStore> {
  const host = o.masterAddr === 'localhost' ? '127.0.0.1' : o.masterAddr;
  const port = o.masterPort!;
  let server: StoreServer | undefined;
  if (o.nodeRank === 0) server = await startStoreServer({ host, port, token });
  else if (o.nodeRank === undefined && (await canListen(host, port))) {
    // Another launcher on this machine may win the port in between: then it hosts, we join.
    server = await startStoreServer({ host, port, token }).catch(() => undefined);
  }
  try {
    const store = await StoreClient.connect({ host, port, token, timeoutMs: e.timeoutMs });
    return {
      store,
      server,
      where: `${host}:${port}`,
      close: async () => {
        store.close();
        await server?.close();
      },
    };
  } catch (err) {
    await server?.close();
    throw err;
  }
}

/** Whether host:port can be listened on here (the address is this machine's and the port free). */
function canListen(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen({ host, port, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}
