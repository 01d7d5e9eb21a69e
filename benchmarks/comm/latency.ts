// Small-message tuning bench for the comm core: all-reduce latency (median and p10 wall time
// of back-to-back calls, and CPU time per call) of the gather algorithm and of the ring, side
// by side in the same processes, next to the floor of the same run: one hop of raw TCP in the
// ring pattern (every rank writes the buffer to its next and waits for its previous rank's),
// which a one-hop algorithm cannot beat. Picks the sizes for defaultSmallAllReduceBytes.
//   node --import tsx benchmarks/comm/latency.ts [nproc] [bytes,...] [iters]
import { loadavg } from 'node:os';
import { createServer, connect, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { initProcessGroup, type ProcessGroup } from '../../packages/comm/src/index.ts';
import { runRanks } from '../common/ranks.ts';

const quantile = (a: number[], q: number) => [...a].sort((x, y) => x - y)[Math.floor(a.length * q)]!;

/** One-hop ring exchange over plain TCP: µs per exchange (median) and CPU µs per exchange. */
let hops = 0;

async function tcpHop(pg: ProcessGroup, bytes: number, iters: number): Promise<[number, number]> {
  const id = hops++;
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  await pg.store!.set(`lat/tcp/${id}/${pg.rank}`, (srv.address() as { port: number }).port);
  const accepted = new Promise<Socket>((r) => srv.once('connection', r));
  const out = connect(Number(await pg.store!.get(`lat/tcp/${id}/${(pg.rank + 1) % pg.worldSize}`)), '127.0.0.1');
  out.setNoDelay(true);
  await new Promise((r) => out.once('connect', r));
  const inp = await accepted;
  inp.setNoDelay(true);
  const msg = Buffer.alloc(bytes, 1);
  let got = 0;
  let want = 0;
  let wake: (() => void) | undefined;
  inp.on('data', (d: Buffer) => {
    got += d.length;
    if (got >= want) wake?.();
  });
  const times: number[] = [];
  await pg.barrier();
  const c0 = process.cpuUsage();
  for (let i = 0; i < iters; i++) {
    const t0 = performance.now();
    want += bytes;
    out.write(msg);
    if (got < want) await new Promise<void>((r) => (wake = r));
    times.push((performance.now() - t0) * 1000);
  }
  const c = process.cpuUsage(c0);
  await pg.barrier();
  out.destroy();
  inp.destroy();
  srv.close();
  return [quantile(times, 0.5), (c.user + c.system) / iters];
}

async function timeCalls(pg: ProcessGroup, bytes: number, iters: number): Promise<[number, number, number]> {
  const buf = new Float32Array(bytes / 4).fill(1);
  for (let i = 0; i < 50; i++) await pg.allReduce(buf.fill(1));
  const times: number[] = [];
  await pg.barrier();
  const c0 = process.cpuUsage();
  for (let i = 0; i < iters; i++) {
    const t0 = performance.now();
    await pg.allReduce(buf);
    times.push((performance.now() - t0) * 1000);
  }
  const c = process.cpuUsage(c0);
  return [quantile(times, 0.5), quantile(times, 0.1), (c.user + c.system) / iters];
}

async function worker(): Promise<void> {
  // Two groups over the same processes: one that always takes the gather all-reduce, one that
  // always takes the ring, measured alternately per size (same run, same load).
  const gather = await initProcessGroup({ smallAllReduceBytes: 1 << 30 });
  const ring = await initProcessGroup({ masterPort: Number(process.env.MASTER_PORT) + 1, smallAllReduceBytes: 0 });
  const sizes = (process.env.LAT_SIZES ?? '4,1024,4096,16384,65536').split(',').map(Number);
  const iters = Number(process.env.LAT_ITERS ?? 1000);
  const COLS = 8;
  const all = new Float32Array(sizes.length * COLS);
  for (const [i, bytes] of sizes.entries()) {
    const [hop, hopCpu] = await tcpHop(gather, bytes, iters);
    const g = await timeCalls(gather, bytes, iters);
    const r = await timeCalls(ring, bytes, iters);
    all.set([...g, ...r, hop, hopCpu], i * COLS);
  }
  await gather.allReduce(all, { op: 'max' });
  if (gather.rank === 0) {
    const n = gather.worldSize;
    console.log(
      `nproc=${n} iters=${iters} load ${loadavg()
        .map((x) => x.toFixed(1))
        .join(' ')}; slowest rank's median | p10 | CPU per call, µs`,
    );
    console.log(
      `${'bytes'.padStart(8)} ${'gather med/p10/cpu'.padStart(22)} ${'ring med/p10/cpu'.padStart(22)} ` +
        `${'tcp hop med/cpu'.padStart(17)} ${'gather/ring'.padStart(12)}`,
    );
    const f = (x: number) => x.toFixed(0);
    sizes.forEach((bytes, i) => {
      const [gm, gp, gc, rm, rp, rc, hm, hc] = all.subarray(i * COLS, (i + 1) * COLS) as unknown as number[];
      console.log(
        `${String(bytes).padStart(8)} ${`${f(gm!)} / ${f(gp!)} / ${f(gc!)}`.padStart(22)} ` +
          `${`${f(rm!)} / ${f(rp!)} / ${f(rc!)}`.padStart(22)} ` +
          `${`${f(hm!)} / ${f(hc!)}`.padStart(17)} ${(gm! / rm!).toFixed(2).padStart(12)}`,
      );
    });
  }
  await ring.destroy();
  await gather.destroy();
}

if (process.env.RANK !== undefined) {
  await worker();
} else {
  const n = Number(process.argv[2] ?? 2);
  const port = 20000 + 2 * Math.floor(Math.random() * 10000);
  const env: Record<string, string | undefined> = {};
  if (process.argv[3]) env.LAT_SIZES = process.argv[3];
  if (process.argv[4]) env.LAT_ITERS = process.argv[4];
  await runRanks(fileURLToPath(import.meta.url), n, port, env);
}
