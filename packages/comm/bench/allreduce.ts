// Quick tuning bench for the comm core (the user-facing one is `zeroring bench collectives`):
// all-reduce time per size (median) next to a raw TCP pump between the same processes in the
// ring's own pattern (each rank sends to next while receiving from prev), same run.
//   node --import tsx packages/comm/bench/allreduce.ts [nproc] [sizes,...]
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer, connect, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { initProcessGroup, type ProcessGroup } from '../src/index.ts';

const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;

let tcpCpuNsPerByte = 0;

async function tcpCeiling(pg: ProcessGroup, bytes: number, reps: number): Promise<number> {
  // Plain sockets, ring pattern; addresses exchanged through a broadcast-free trick: the store.
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as { port: number }).port;
  await pg.store!.set(`bench/tcp/${pg.rank}`, port);
  const accepted = new Promise<Socket>((r) => srv.once('connection', r));
  const nextPort = Number(await pg.store!.get(`bench/tcp/${(pg.rank + 1) % pg.worldSize}`));
  const out = connect(nextPort, '127.0.0.1');
  out.setNoDelay(true);
  await new Promise((r) => out.once('connect', r));
  const inp = await accepted;
  const chunk = Buffer.alloc(1 << 20, 1);
  const times: number[] = [];
  const cpu: number[] = [];
  // One listener for the whole run: a flowing socket without a 'data' listener drops bytes.
  let received = 0;
  let want = 0;
  let wake: (() => void) | undefined;
  inp.on('data', (d: Buffer) => {
    received += d.length;
    if (received >= want) wake?.();
  });
  for (let i = 0; i < reps; i++) {
    await pg.barrier();
    const t0 = performance.now();
    want = (i + 1) * bytes;
    const recv = received >= want ? Promise.resolve() : new Promise<void>((r) => (wake = r));
    const send = (async () => {
      for (let sent = 0; sent < bytes; sent += chunk.length) {
        if (!out.write(chunk)) await new Promise((r) => out.once('drain', r));
      }
    })();
    const c0 = process.cpuUsage();
    await Promise.all([recv, send]);
    const c = process.cpuUsage(c0);
    cpu.push(((c.user + c.system) * 1000) / bytes);
    times.push(performance.now() - t0);
  }
  tcpCpuNsPerByte = median(cpu);
  out.destroy();
  inp.destroy();
  srv.close();
  return bytes / (median(times) / 1000) / 1e9;
}

async function worker(): Promise<void> {
  const pg = await initProcessGroup();
  const sizes = (process.env.BENCH_SIZES ?? '4096,65536,1048576,16777216,67108864').split(',').map(Number);
  const rows: string[] = [];
  const json: Record<string, number>[] = [];
  const n = pg.worldSize;
  const ceil = await tcpCeiling(pg, 64 << 20, 5);
  for (const bytes of sizes) {
    const buf = new Float32Array(bytes / 4).fill(1);
    const reps = bytes <= 65536 ? 300 : bytes <= 1 << 20 ? 50 : bytes <= 16 << 20 ? 10 : 6;
    for (let i = 0; i < Math.min(20, reps); i++) await pg.allReduce(buf);
    const times: number[] = [];
    const cpu: number[] = [];
    for (let i = 0; i < reps; i++) {
      await pg.barrier();
      const t0 = performance.now();
      const c0 = process.cpuUsage();
      await pg.allReduce(buf);
      const c = process.cpuUsage(c0);
      times.push(performance.now() - t0);
      // Bytes this rank sends (and receives) in a ring all-reduce: 2(n-1)/n of the buffer.
      cpu.push(((c.user + c.system) * 1000) / ((bytes * 2 * (n - 1)) / n));
    }
    const t = median(times);
    const alg = bytes / (t / 1000) / 1e9;
    const bus = (alg * 2 * (n - 1)) / n;
    json.push({ bytes, medianUs: t * 1000, algbwGBs: alg, busbwGBs: bus, ofCeiling: bus / ceil, cpuNsPerByte: median(cpu), tcpCpuNsPerByte });
    rows.push(`${String(bytes).padStart(10)} ${(t * 1000).toFixed(0).padStart(10)} us ${alg.toFixed(3).padStart(7)} ${bus.toFixed(3).padStart(7)} GB/s  ${(bus / ceil).toFixed(2)}x ceil  cpu ${median(cpu).toFixed(3)} ns/B (tcp ${tcpCpuNsPerByte.toFixed(3)}) -> ${(tcpCpuNsPerByte / median(cpu)).toFixed(2)}`);
  }
  if (pg.rank === 0) {
    console.log(`nproc=${n} tcp ceiling (each way) ${ceil.toFixed(3)} GB/s  chunk=${process.env.ZERORING_CHUNK_BYTES ?? 'default'}`);
    console.log(`     bytes     median    algbw   busbw`);
    for (const r of rows) console.log(r);
    if (process.env.BENCH_JSON) {
      const { writeFileSync } = await import('node:fs');
      writeFileSync(process.env.BENCH_JSON, JSON.stringify({ nproc: n, tcpCeilingGBs: ceil, chunkBytes: Number(process.env.ZERORING_CHUNK_BYTES ?? 1 << 20), loadavg: (await import('node:os')).loadavg(), rows: json }, null, 2) + '\n');
    }
  }
  await pg.destroy();
}

if (process.env.RANK !== undefined) {
  await worker();
} else {
  const n = Number(process.argv[2] ?? 2);
  const port = 20000 + Math.floor(Math.random() * 20000);
  const token = randomBytes(16).toString('hex');
  const kids = Array.from({ length: n }, (_, r) =>
    spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url)], {
      stdio: 'inherit',
      env: { ...process.env, RANK: String(r), WORLD_SIZE: String(n), MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), ZERORING_TOKEN: token },
    }),
  );
  await Promise.all(kids.map((k) => new Promise((r) => k.on('exit', r))));
}
