// The live training dashboard: one node:http server that serves a static page (plain HTML + JS,
// uPlot from node_modules, nothing from a CDN) and a WebSocket at /ws that pushes TrainEvents.
//
// A client that connects gets the whole history first, then every new event as it is published,
// so opening the page mid-run (or after it) shows the same picture as watching from the start.
// Every message is a JSON array of events; the history is just a long one.
// Bound to 127.0.0.1 unless told otherwise: training configs and samples are nobody else's business.
import * as http from 'node:http';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { WebSocketServer, WebSocket } from 'ws';
import type { TrainEvent } from '@zeroring/train';
import { followRun } from './run-reader.ts';

export interface DashboardOptions {
  /** 0 picks a free port. */
  port: number;
  host?: string;
  /** Also show (and keep following) a run directory written by `zeroring train --out DIR`. */
  outDir?: string;
  /** How often to look for new lines in outDir, in ms. */
  pollMs?: number;
}

export interface Dashboard {
  /** http://host:port/ */
  url: string;
  port: number;
  host: string;
  publish(event: TrainEvent): void;
  /** Events published so far (what a new client receives first). */
  history(): readonly TrainEvent[];
  close(): Promise<void>;
}

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);

/** URL path -> [file, content type]. A fixed table: no path from a request ever reaches the filesystem. */
function routes(): Map<string, [string, string]> {
  const uplotDir = path.dirname(require.resolve('uplot/dist/uPlot.iife.min.js'));
  const staticDir = path.join(here, 'static');
  return new Map([
    ['/', [path.join(staticDir, 'index.html'), 'text/html; charset=utf-8']],
    ['/index.html', [path.join(staticDir, 'index.html'), 'text/html; charset=utf-8']],
    ['/app.js', [path.join(staticDir, 'app.js'), 'text/javascript; charset=utf-8']],
    ['/style.css', [path.join(staticDir, 'style.css'), 'text/css; charset=utf-8']],
    ['/vendor/uPlot.iife.min.js', [path.join(uplotDir, 'uPlot.iife.min.js'), 'text/javascript; charset=utf-8']],
    ['/vendor/uPlot.min.css', [path.join(uplotDir, 'uPlot.min.css'), 'text/css; charset=utf-8']],
  ]);
}

export async function startDashboard(opts: DashboardOptions): Promise<Dashboard> {
  const host = opts.host ?? '127.0.0.1';
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) {
    throw new RangeError(`dashboard port ${opts.port} is invalid: expected an integer 0..65535 (0 = any free port)`);
  }
  const history: TrainEvent[] = [];
  const server = http.createServer(pageHandler(routes(), history));
  await listenOn(server, opts.port, host);
  const port = (server.address() as { port: number }).port;

  // Made after listen succeeded: ws re-emits the server's errors, and a listen error (port taken)
  // with nobody listening on the WebSocketServer would be an uncaught exception.
  const wss = new WebSocketServer({ server, path: '/ws' });
  wss.on('error', () => {}); // server errors after listen surface on `server`; nothing to add here
  wss.on('connection', (socket) => {
    socket.on('error', () => socket.terminate()); // a page gone mid-send is not our failure
    socket.send(JSON.stringify(history));
  });
  const broadcast = (events: TrainEvent[]) => {
    if (events.length === 0) return;
    const msg = JSON.stringify(events);
    for (const client of wss.clients) if (client.readyState === WebSocket.OPEN) client.send(msg);
  };
  const timer = opts.outDir === undefined ? undefined : followInto(opts.outDir, history, wss, broadcast, opts.pollMs);

  const urlHost = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;
  return {
    url: `http://${urlHost}:${port}/`,
    port,
    host,
    publish: (event) => {
      history.push(event);
      broadcast([event]);
    },
    history: () => history,
    close: async () => {
      if (timer) clearInterval(timer);
      await closeAll(server, wss);
    },
  };
}

/** GET of the page, its assets and the history so far (events.json); nothing else. */
function pageHandler(table: Map<string, [string, string]>, history: TrainEvent[]): http.RequestListener {
  return (req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (url.pathname === '/favicon.ico') {
      res.writeHead(204).end();
      return;
    }
    if (url.pathname === '/events.json') {
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(JSON.stringify(history));
      return;
    }
    const route = table.get(url.pathname);
    if (!route) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: ${url.pathname}\n`);
      return;
    }
    const [file, type] = route;
    fs.readFile(file, (err, body) => {
      if (err) {
        res
          .writeHead(500, { 'content-type': 'text/plain' })
          .end(`cannot read ${path.basename(file)}: ${err.message}\n`);
        return;
      }
      res.writeHead(200, { 'content-type': type, 'cache-control': 'no-cache' });
      res.end(req.method === 'HEAD' ? undefined : body);
    });
  };
}

function listenOn(server: http.Server, port: number, host: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** Follows a run directory's events into the history and to the pages; returns the poll timer. */
function followInto(
  outDir: string,
  history: TrainEvent[],
  wss: WebSocketServer,
  broadcast: (events: TrainEvent[]) => void,
  pollMs = 500,
): NodeJS.Timeout {
  const follower = followRun(outDir);
  const pull = () => {
    const { events: fresh, reset } = follower.poll();
    if (reset) {
      // A new run in the same directory: drop the old one and make pages reconnect, which
      // gives them the new history from scratch (1012: service restart).
      history.length = 0;
      history.push(...fresh);
      for (const client of wss.clients) client.close(1012, 'run restarted');
      return;
    }
    if (fresh.length === 0) return;
    history.push(...fresh);
    broadcast(fresh);
  };
  pull();
  const timer = setInterval(pull, pollMs);
  timer.unref();
  return timer;
}

async function closeAll(server: http.Server, wss: WebSocketServer): Promise<void> {
  // A polite close first, so a 'done' event published just before still reaches open pages;
  // whoever does not answer within a second is cut off.
  const closed = (c: WebSocket) =>
    new Promise<void>((resolve) => {
      if (c.readyState === WebSocket.CLOSED) return resolve();
      c.once('close', () => resolve());
      c.close(1001, 'dashboard closing');
    });
  await Promise.race([
    Promise.all([...wss.clients].map(closed)),
    new Promise<void>((resolve) => setTimeout(resolve, 1000).unref()),
  ]);
  for (const client of wss.clients) client.terminate();
  await new Promise<void>((resolve) => wss.close(() => resolve()));
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}
