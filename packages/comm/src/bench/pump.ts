// The "ceiling" of the collectives benchmark: raw TCP (node:net) between the same processes,
// in the ring's own pattern: every rank sends to its next while receiving from its previous,
// all links at once. A ring collective cannot move bytes over a link faster than this, so an
// op's busbw divided by this rate says how much of the machine the collectives use.
import { createServer, connect, type NetConnectOpts, type Socket } from 'node:net';
import { once } from 'node:events';
import type { ProcessGroup } from '../process-group.ts';

const CHUNK = 1024 * 1024;
/** The transport's read size (packages/comm/src/transport/frame-reader.ts). */
const READ_BUFFER_BYTES = 256 * 1024;

export interface PumpResult {
  bytesPerLink: number;
  /** Per repetition: the slowest rank's time, in microseconds. */
  timesUs: number[];
  /** Per repetition: CPU time (user + system) of one rank, averaged over ranks, in microseconds. */
  cpuUs: number[];
}

export async function ringPump(
  pg: ProcessGroup,
  bytesPerLink: number,
  reps: number,
  host = '127.0.0.1',
): Promise<PumpResult> {
  const n = pg.worldSize;
  const server = createServer();
  server.listen(0, host);
  await once(server, 'listening');
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const ports = new Float32Array(n);
  await pg.allGather(new Float32Array([(server.address() as { port: number }).port]), ports);

  // As the ring: each rank dials its previous rank and receives on that socket, reading into
  // one reused buffer (as the transport does), so the ceiling is the socket's, not the cost of
  // Node allocating a fresh buffer per read.
  let received = 0;
  let want = 0;
  let wake: (() => void) | undefined;
  const inp = connect({
    port: ports[(pg.rank - 1 + n) % n]!,
    host,
    onread: {
      buffer: Buffer.allocUnsafe(READ_BUFFER_BYTES),
      callback: (nread: number) => {
        received += nread;
        if (received >= want) wake?.();
      },
    },
  } as unknown as NetConnectOpts);
  await once(inp, 'connect');
  const [out] = await accepted;
  out.setNoDelay(true);
  const chunk = Buffer.alloc(CHUNK, 0x5a);

  const send = async (): Promise<void> => {
    for (let sent = 0; sent < bytesPerLink;) {
      const len = Math.min(CHUNK, bytesPerLink - sent);
      sent += len;
      const last = sent === bytesPerLink;
      const flushed = last
        ? new Promise<void>((res, rej) => out.write(chunk.subarray(0, len), (e) => (e ? rej(e) : res())))
        : null;
      if (flushed) await flushed;
      else if (!out.write(chunk.subarray(0, len))) await once(out, 'drain');
    }
  };
  const receive = (): Promise<void> =>
    new Promise((res) => {
      wake = () => {
        wake = undefined;
        res();
      };
      if (received >= want) wake();
    });

  const times = new Float32Array(reps);
  const cpu = new Float32Array(reps);
  for (let rep = 0; rep < reps; rep++) {
    await pg.barrier();
    want += bytesPerLink;
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await Promise.all([send(), receive()]);
    times[rep] = (performance.now() - t0) * 1000;
    const c = process.cpuUsage(c0);
    cpu[rep] = (c.user + c.system) / n;
  }
  await pg.allReduce(times, { op: 'max' });
  await pg.allReduce(cpu, { op: 'sum' });
  out.destroy();
  inp.destroy();
  server.close();
  return { bytesPerLink, timesUs: [...times], cpuUs: [...cpu] };
}
