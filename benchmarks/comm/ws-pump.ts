// One-way ws throughput between two processes, to decide the data direction and masking:
// server->client (never masked), client->server with ws's random mask, and client->server
// with a zero mask (ws skips the masking pass). Run with and without bufferutil
// (WS_NO_BUFFER_UTIL=1) to see what the native masking helper buys.
//   node --import tsx benchmarks/comm/ws-pump.ts
import { fork } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type * as Ws from 'ws';

// ws is a dependency of @zeroring/comm, not of the workspace root: load the same copy comm uses.
const commRequire = createRequire(new URL('../../packages/comm/package.json', import.meta.url));
const { WebSocket, WebSocketServer } = commRequire('ws') as typeof Ws;
type WebSocket = Ws.WebSocket;

const TOTAL = 256 << 20;
const FRAME = 1 << 20;
type Mode = 'server-sends' | 'client-sends-random-mask' | 'client-sends-zero-mask';

function pump(ws: WebSocket): Promise<void> {
  const payload = Buffer.alloc(FRAME, 3);
  return new Promise((resolve) => {
    let sent = 0;
    const more = () => {
      while (sent < TOTAL) {
        sent += FRAME;
        ws.send(payload, { binary: true });
        if (ws.bufferedAmount > 8 * FRAME) return setTimeout(more, 0);
      }
      resolve();
    };
    more();
  });
}

if (process.argv[2] === 'child') {
  const [port, mode] = [Number(process.argv[3]), process.argv[4] as Mode];
  const ws = new WebSocket(`ws://127.0.0.1:${port}`, {
    perMessageDeflate: false,
    maxPayload: 2 * FRAME,
    ...(mode === 'client-sends-zero-mask' ? { generateMask: (m: Buffer) => m.fill(0) } : {}),
  });
  ws.on('open', async () => {
    if (mode !== 'server-sends') await pump(ws);
  });
  let got = 0;
  ws.on('message', (d: Buffer) => {
    got += d.length;
    if (got >= TOTAL) ws.close();
  });
  ws.on('close', () => process.exit(0));
} else {
  const modes: Mode[] = ['server-sends', 'client-sends-random-mask', 'client-sends-zero-mask'];
  const res: Record<string, number> = {};
  for (const mode of modes) {
    const best: number[] = [];
    for (let rep = 0; rep < 3; rep++) {
      const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate: false, maxPayload: 2 * FRAME });
      await new Promise((r) => wss.once('listening', r));
      const port = (wss.address() as { port: number }).port;
      const child = fork(fileURLToPath(import.meta.url), ['child', String(port), mode], { execArgv: process.execArgv });
      const ws: WebSocket = await new Promise((r) => wss.once('connection', r));
      const t0 = performance.now();
      if (mode === 'server-sends') await pump(ws);
      else {
        let got = 0;
        await new Promise<void>((resolve) =>
          ws.on('message', (d: Buffer) => {
            got += d.length;
            if (got >= TOTAL) resolve();
          }),
        );
      }
      if (mode === 'server-sends') await new Promise((r) => ws.once('close', r));
      best.push(TOTAL / ((performance.now() - t0) / 1000) / 1e9);
      ws.terminate();
      await new Promise((r) => child.once('exit', r));
      wss.close();
    }
    res[mode] = [...best].sort()[1]!;
  }
  console.log(
    `ws one-way GB/s (median of 3, ${TOTAL >> 20} MiB in ${FRAME >> 10} KiB ` +
      `frames, bufferutil ${process.env.WS_NO_BUFFER_UTIL ? 'off' : 'on'}):`,
    JSON.stringify(Object.fromEntries(Object.entries(res).map(([k, v]) => [k, +v.toFixed(3)]))),
  );
}
