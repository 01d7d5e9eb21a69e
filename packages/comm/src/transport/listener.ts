// A listening WebSocket endpoint (store or ring peer) whose every connection must pass the
// token handshake of conn.ts before its owner sees it. Plain HTTP requests get 426, bad
// upgrades and raw garbage are dropped by Node's HTTP parser; none of it reaches the job.
import { createServer, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { WebSocketServer } from 'ws';
import { ConfigError } from '../errors.ts';
import type { Logger } from '@zeroring/core';
import { Conn, type Purpose } from './conn.ts';

export interface ListenOptions {
  host: string;
  port: number;
  token: string;
  purpose: Purpose;
  maxPayload: number;
  authTimeoutMs: number;
  log: Logger;
  /** Called with each connection that passed the handshake. */
  onConn: (c: Conn) => void;
  /**
   * Called when a client sent a well-formed handshake whose proof of the token was wrong, with
   * its address and the rank it claimed (unproven: anyone can claim any rank).
   */
  onWrongProof?: (remote: string, claimedRank: number) => void;
}

export interface Listener {
  readonly host: string;
  readonly port: number;
  /** Every connection accepted so far that is still open. */
  readonly conns: Set<Conn>;
  setRef(on: boolean): void;
  close(): Promise<void>;
}

export async function listen(o: ListenOptions): Promise<Listener> {
  const http: Server = createServer((_req, res) => {
    res.writeHead(426, { 'content-type': 'text/plain' });
    res.end('zeroring speaks WebSocket only\n');
  });
  http.on('clientError', (err, socket: Socket) => {
    o.log.warn(
      { purpose: o.purpose, remote: socket.remoteAddress, err: err.message },
      'dropping malformed HTTP request',
    );
    socket.destroy();
  });
  const wss = new WebSocketServer({
    server: http,
    perMessageDeflate: false,
    maxPayload: o.maxPayload,
    clientTracking: false,
  });
  const conns = new Set<Conn>();
  let ref = true;
  wss.on('connection', (ws, req) => {
    const c = Conn.accept(ws, req.socket, {
      token: o.token,
      purpose: o.purpose,
      log: o.log,
      authTimeoutMs: o.authTimeoutMs,
    });
    conns.add(c);
    if (!ref) c.setRef(false);
    c.onClose(() => conns.delete(c));
    c.ready.then(
      () => o.onConn(c),
      (e: Error) => {
        o.log.warn({ purpose: o.purpose, remote: c.remote, err: e.message }, 'rejected a connection');
        if (c.wrongProofRank !== null) o.onWrongProof?.(c.remote, c.wrongProofRank);
      },
    );
  });
  wss.on('error', (e) => o.log.warn({ purpose: o.purpose, err: e.message }, 'listener error'));
  await new Promise<void>((resolve, reject) => {
    const onErr = (e: NodeJS.ErrnoException) => {
      if (e.code === 'EADDRINUSE')
        reject(
          new ConfigError(
            `cannot listen for the ${o.purpose} on ${o.host}:${o.port}: the port is already in use ` +
              `(expected a free port${o.purpose === 'store' ? '; set MASTER_PORT to a free one' : ''})`,
          ),
        );
      else if (e.code === 'EADDRNOTAVAIL')
        reject(
          new ConfigError(
            `cannot listen for the ${o.purpose} on ${o.host}:${o.port}: ${o.host} is ` +
              'not an address of this machine (check MASTER_ADDR / ZERORING_BIND_ADDR)',
          ),
        );
      else reject(new ConfigError(`cannot listen for the ${o.purpose} on ${o.host}:${o.port}: ${e.message}`));
    };
    http.once('error', onErr);
    http.listen(o.port, o.host, () => {
      http.off('error', onErr);
      resolve();
    });
  });
  const addr = http.address();
  const port = typeof addr === 'object' && addr ? addr.port : o.port;
  return {
    host: o.host,
    port,
    conns,
    setRef(on) {
      ref = on;
      if (on) http.ref();
      else http.unref();
      for (const c of conns) c.setRef(on);
    },
    async close() {
      wss.close();
      const closed = new Promise<void>((r) => http.close(() => r()));
      // Close politely first so replies already queued still reach the clients.
      const open = [...conns].filter((c) => !c.closed);
      const gone = Promise.all(open.map((c) => new Promise<void>((r) => c.onClose(() => r()))));
      for (const c of open) c.close(1001, 'shutting down');
      let t: NodeJS.Timeout | undefined;
      await Promise.race([gone, new Promise((r) => (t = setTimeout(r, 1000)))]);
      clearTimeout(t);
      for (const c of conns) c.terminate();
      http.closeAllConnections();
      await closed;
    },
  };
}
