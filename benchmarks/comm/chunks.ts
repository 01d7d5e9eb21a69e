// Chunk-size tuning for large all-reduces: one process group per chunk size over the same
// processes, timed alternately (iteration by iteration, so every size sees the same load),
// next to a raw TCP ring pump of the same bytes per link in the same rounds. Prints the median
// wall time, busbw as a fraction of the pump's, and CPU per link byte of each.
//   node --import tsx benchmarks/comm/chunks.ts [nproc] [bytes] [chunk,...] [rounds]
import { loadavg } from 'node:os';
import { createServer, connect, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { initProcessGroup, type ProcessGroup } from '../../packages/comm/src/index.ts';
import { runRanks } from '../common/ranks.ts';

const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;

/** A raw TCP pump in the ring pattern: returns a function that moves `bytes` once, timed. */
async function pump(pg: ProcessGroup): Promise<(bytes: number) => Promise<void>> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  await pg.store!.set(`chunks/tcp/${pg.rank}`, (srv.address() as { port: number }).port);
  const accepted = new Promise<Socket>((r) => srv.once('connection', r));
  const out = connect(Number(await pg.store!.get(`chunks/tcp/${(pg.rank + 1) % pg.worldSize}`)), '127.0.0.1');
  await new Promise((r) => out.once('connect', r));
  const inp = await accepted;
  srv.close();
  const block = Buffer.alloc(1 << 20, 1);
  let got = 0;
  let want = 0;
  let wake: (() => void) | undefined;
  inp.on('data', (d: Buffer) => {
    got += d.length;
    if (got >= want) wake?.();
  });
  return async (bytes) => {
    want += bytes;
    const recv = got >= want ? Promise.resolve() : new Promise<void>((r) => (wake = r));
    for (let sent = 0; sent < bytes; sent += block.length)
      if (!out.write(block)) await new Promise((r) => out.once('drain', r));
    await recv;
  };
}

async function worker(): Promise<void> {
  const chunks = (process.env.CH_CHUNKS ?? '65536,262144,1048576').split(',').map(Number);
  const bytes = Number(process.env.CH_BYTES ?? 64 << 20);
  const rounds = Number(process.env.CH_ROUNDS ?? 7);
  const base = Number(process.env.MASTER_PORT);
  const groups: ProcessGroup[] = [];
  for (const [i, c] of chunks.entries())
    groups.push(await initProcessGroup({ masterPort: base + i, chunkBytes: c, smallAllReduceBytes: 0 }));
  const pg = groups[0]!;
  const n = pg.worldSize;
  const link = (bytes * 2 * (n - 1)) / n;
  const tcp = await pump(pg);
  const buf = new Float32Array(bytes / 4).fill(1);
  const times: number[][] = chunks.map(() => []);
  const cpus: number[][] = chunks.map(() => []);
  const tcpTimes: number[] = [];
  const tcpCpu: number[] = [];
  for (let r = -1; r < rounds; r++) {
    for (const [i, g] of groups.entries()) {
      await g.barrier();
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      await g.allReduce(buf);
      const dt = performance.now() - t0;
      const c = process.cpuUsage(c0);
      if (r >= 0) {
        times[i]!.push(dt);
        cpus[i]!.push(((c.user + c.system) * 1000) / link);
      }
    }
    await pg.barrier();
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await tcp(link);
    const dt = performance.now() - t0;
    const c = process.cpuUsage(c0);
    if (r >= 0) {
      tcpTimes.push(dt);
      tcpCpu.push(((c.user + c.system) * 1000) / link);
    }
  }
  if (pg.rank === 0) {
    const tcpGBs = link / (median(tcpTimes) / 1000) / 1e9;
    console.log(
      `nproc=${n} bytes=${bytes} rounds=${rounds} load ${loadavg()
        .map((x) => x.toFixed(1))
        .join(' ')}; tcp pump ${tcpGBs.toFixed(3)} GB/s, ${median(tcpCpu).toFixed(2)} CPU ns per link byte`,
    );
    for (const [i, c] of chunks.entries()) {
      const bus = link / (median(times[i]!) / 1000) / 1e9;
      console.log(
        `chunk ${String(c).padStart(8)}: ${median(times[i]!).toFixed(0).padStart(7)} ms  ` +
          `busbw ${bus.toFixed(3)} GB/s = ${(bus / tcpGBs).toFixed(2)} of pump   CPU ` +
          `${median(cpus[i]!).toFixed(2)} ns/B = pump x${(median(cpus[i]!) / median(tcpCpu)).toFixed(2)}`,
      );
    }
  }
  for (const g of groups) await g.destroy();
  process.exit(0);
}

if (process.env.RANK !== undefined) {
  await worker();
} else {
  const n = Number(process.argv[2] ?? 2);
  const port = 20000 + 8 * Math.floor(Math.random() * 5000);
  const env: Record<string, string | undefined> = {};
  if (process.argv[3]) env.CH_BYTES = process.argv[3];
  if (process.argv[4]) env.CH_CHUNKS = process.argv[4];
  if (process.argv[5]) env.CH_ROUNDS = process.argv[5];
  await runRanks(fileURLToPath(import.meta.url), n, port, env);
}
