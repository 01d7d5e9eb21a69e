// One rank of `zeroring bench collectives` (started by the launcher). For each op and size it
// times the collective on deterministic data, checks every result against the reference, and
// rank 0 prints the nccl-tests table: time is the median over iterations of the slowest rank's
// time, algbw = bytes / time, busbw = algbw * nccl-tests' bus factor. The raw-TCP ring pump of
// the same processes in the same run gives the "ceiling" row and each op's fraction of it.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { cpus, loadavg } from 'node:os';
import { initProcessGroup, type ProcessGroup } from '../process-group.ts';
import { busFactor, countWrong, makeCase, type BenchOp } from './pattern.ts';
import { ringPump } from './pump.ts';
import { formatBytes, sweep } from './sizes.ts';

export interface BenchConfig {
  ops: BenchOp[];
  minBytes: number;
  maxBytes: number;
  stepFactor: number;
  /** Timed iterations per size; default depends on the size (more for small messages). */
  iters?: number;
  warmup: number;
  /** Bytes each rank sends to its next in one pump repetition, and repetitions. */
  pumpBytes: number;
  pumpReps: number;
  json?: string;
}

export interface Row {
  op: BenchOp | 'ceiling';
  bytes: number;
  count: number;
  iters: number;
  timeUs: number;
  algbwGBs: number;
  busbwGBs: number;
  ofCeiling: number | null;
  /**
   * Link bytes moved per CPU-second of one rank (bytes x bus factor / median per-rank CPU time of an
   * iteration): on a loaded machine wall-clock rates follow the CPU share we get, this does not.
   */
  cpuGBs: number;
  ofCeilingCpu: number | null;
  wrong: number;
}

/**
 * A barrier before each timed iteration, where needed: for large buffers (resetting them between
 * iterations takes long enough to skew ranks) and for broadcast, whose root could otherwise run
 * ahead and have its next message waiting before the receivers start their clocks. All-reduce,
 * reduce-scatter and all-gather need every rank's input to finish, so back to back they time
 * themselves honestly, without the barrier's own exit skew.
 */
const BARRIER_FROM_BYTES = 1024 * 1024;
const needsBarrier = (op: BenchOp, bytes: number): boolean => op === 'broadcast' || bytes >= BARRIER_FROM_BYTES;

function defaultIters(bytes: number): number {
  if (bytes <= 64 * 1024) return 100;
  if (bytes <= 1024 * 1024) return 50;
  if (bytes <= 8 * 1024 * 1024) return 20;
  return 10;
}

export function median(xs: ArrayLike<number>): number {
  const s = Array.from(xs).sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function run(pg: ProcessGroup, op: BenchOp, c: ReturnType<typeof makeCase>): Promise<void> {
  switch (op) {
    case 'allreduce':
      return pg.allReduce(c.input, { op: 'sum' });
    case 'reducescatter':
      return pg.reduceScatter(c.input, c.output, { op: 'sum' });
    case 'allgather':
      return pg.allGather(c.input, c.output);
    case 'broadcast':
      return pg.broadcast(c.input, 0);
  }
}

/** Elements of the op's buffer for `bytes`: as nccl-tests, a whole number per rank where it is scattered/gathered. */
function countFor(op: BenchOp, bytes: number, n: number): number {
  const count = Math.floor(bytes / 4);
  return op === 'reducescatter' || op === 'allgather' ? count - (count % n) : count;
}

async function warmUp(
  pg: ProcessGroup,
  op: BenchOp,
  count: number,
  times: number,
): Promise<ReturnType<typeof makeCase>> {
  const c = makeCase(op, pg.rank, pg.worldSize, count);
  for (let w = 0; w < times; w++) {
    c.reset();
    await run(pg, op, c);
  }
  return c;
}

async function benchOp(
  pg: ProcessGroup,
  cfg: BenchConfig,
  op: BenchOp,
  bytes: number,
  ceiling: Row | null,
): Promise<Row | null> {
  const ceilingGBs = ceiling?.busbwGBs;
  const n = pg.worldSize;
  const count = countFor(op, bytes, n);
  if (count === 0) return null;
  const c = await warmUp(pg, op, count, cfg.warmup);
  const iters = cfg.iters ?? defaultIters(count * 4);
  const times = new Float32Array(iters);
  const cpu = new Float32Array(iters);
  let wrong = 0;
  for (let it = 0; it < iters; it++) {
    c.reset();
    if (needsBarrier(op, count * 4)) await pg.barrier();
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await run(pg, op, c);
    times[it] = (performance.now() - t0) * 1000;
    const used = process.cpuUsage(c0);
    cpu[it] = (used.user + used.system) / n;
    wrong += countWrong(c.output, c.expected);
  }
  await pg.allReduce(times, { op: 'max' });
  await pg.allReduce(cpu, { op: 'sum' });
  const wrongAll = new Float32Array([wrong]);
  await pg.allReduce(wrongAll, { op: 'sum' });
  const timeUs = median(times);
  const algbwGBs = (count * 4) / (timeUs * 1e-6) / 1e9;
  const busbwGBs = algbwGBs * busFactor(op, n);
  const cpuGBs = (count * 4 * busFactor(op, n)) / (Math.max(1, median(cpu)) * 1e-6) / 1e9;
  return {
    op,
    bytes: count * 4,
    count,
    iters,
    timeUs,
    algbwGBs,
    busbwGBs,
    ofCeiling: ceilingGBs ? busbwGBs / ceilingGBs : null,
    cpuGBs,
    ofCeilingCpu: ceiling ? cpuGBs / ceiling.cpuGBs : null,
    wrong: wrongAll[0]!,
  };
}

const HEADER =
  `${'op'.padEnd(14)}${'bytes'.padStart(12)}${'count'.padStart(12)}${'time(us)'.padStart(12)}` +
  `${'algbw(GB/s)'.padStart(13)}${'busbw(GB/s)'.padStart(13)}${'of ceiling'.padStart(12)}` +
  `${'cpu-GB/s'.padStart(10)}${'of ceil'.padStart(9)}${'#wrong'.padStart(8)}`;

export function formatRow(r: Row): string {
  return (
    r.op.padEnd(14) +
    String(r.bytes).padStart(12) +
    String(r.count).padStart(12) +
    r.timeUs.toFixed(1).padStart(12) +
    r.algbwGBs.toFixed(3).padStart(13) +
    r.busbwGBs.toFixed(3).padStart(13) +
    (r.ofCeiling === null ? '-' : r.ofCeiling.toFixed(2)).padStart(12) +
    r.cpuGBs.toFixed(3).padStart(10) +
    (r.ofCeilingCpu === null ? '-' : r.ofCeilingCpu.toFixed(2)).padStart(9) +
    String(r.wrong).padStart(8)
  );
}

async function main(): Promise<void> {
  const cfg = JSON.parse(process.argv[2] ?? '{}') as BenchConfig;
  const pg = await initProcessGroup();
  const say = (line: string): void => {
    if (pg.rank === 0) console.log(line);
  };
  const n = pg.worldSize;
  // The machine is shared: the load average says how far the absolute numbers can be trusted.
  const loadBefore = loadavg()[0]!;
  say(
    `# zeroring bench collectives: ${n} ranks on ${cpus().length} cores, ` +
      `node ${process.version}, load average ${loadBefore.toFixed(1)}`,
  );
  // Same-host links carry large payloads through shared memory or TCP (ZERORING_SHM; rank 0's links shown).
  const links = pg.links;
  const via = links ? `${links.prev} from the previous rank, ${links.next} to the next` : 'none (one rank)';
  say(`# ring links (rank 0): payloads over 64 KiB via ${via} (ZERORING_SHM=1|0 to choose)`);
  say(
    '# time: median over iterations of the slowest rank; busbw factors: ' +
      'allreduce 2(n-1)/n, reducescatter/allgather (n-1)/n, broadcast 1',
  );

  // The machine is shared and its load drifts, so the pump runs both before and after the ops
  // and the ceiling is the median over both brackets (each bracket is reported too).
  const pumpTimes: number[] = [];
  const pumpCpu: number[] = [];
  const ceilingRow = (times: number[], cpu: number[]): Row => {
    const timeUs = median(times);
    const gbs = cfg.pumpBytes / (timeUs * 1e-6) / 1e9;
    const cpuGBs = cfg.pumpBytes / (Math.max(1, median(cpu)) * 1e-6) / 1e9;
    return {
      op: 'ceiling',
      bytes: cfg.pumpBytes,
      count: cfg.pumpBytes / 4,
      iters: times.length,
      timeUs,
      algbwGBs: gbs,
      busbwGBs: gbs,
      ofCeiling: 1,
      cpuGBs,
      ofCeilingCpu: 1,
      wrong: 0,
    };
  };
  let before: Row | null = null;
  if (n > 1) {
    const early = await ringPump(pg, cfg.pumpBytes, cfg.pumpReps);
    pumpTimes.push(...early.timesUs);
    pumpCpu.push(...early.cpuUs);
    before = ceilingRow(early.timesUs, early.cpuUs);
    say(
      `# ceiling: raw TCP ring pump, every rank sends ${formatBytes(cfg.pumpBytes)} to its ` +
        `next while receiving from its previous, ${cfg.pumpReps} reps before and after the ops`,
    );
  }
  say('#');
  say(HEADER);
  if (before) say(formatRow(before) + '   (before)');

  // As nccl-tests: warm up every op at the largest and the smallest size before timing anything,
  // so the first row measured is not the one that pays for first use (connections idle since
  // the pump, first allocations, compilation).
  for (const op of cfg.ops) {
    for (const bytes of [cfg.maxBytes, cfg.minBytes]) {
      const count = countFor(op, bytes, n);
      if (count > 0) await warmUp(pg, op, count, cfg.warmup);
    }
  }
  const rows: Row[] = [];
  for (const op of cfg.ops) {
    for (const bytes of sweep(cfg.minBytes, cfg.maxBytes, cfg.stepFactor)) {
      const row = await benchOp(pg, cfg, op, bytes, before);
      if (!row) continue;
      rows.push(row);
      say(formatRow(row));
    }
  }
  let ceiling: Row | null = null;
  let after: Row | null = null;
  if (n > 1) {
    const late = await ringPump(pg, cfg.pumpBytes, cfg.pumpReps);
    after = ceilingRow(late.timesUs, late.cpuUs);
    pumpTimes.push(...late.timesUs);
    pumpCpu.push(...late.cpuUs);
    ceiling = ceilingRow(pumpTimes, pumpCpu);
    say(formatRow(after) + '   (after)');
    say(formatRow(ceiling) + '   (both: the ceiling used below)');
    for (const r of rows) {
      r.ofCeiling = r.busbwGBs / ceiling.busbwGBs;
      r.ofCeilingCpu = r.cpuGBs / ceiling.cpuGBs;
    }
    say('#');
    say('# busbw / ceiling, wall clock (median of the pump before and after) | per CPU-second:');
    for (const op of cfg.ops) {
      const mine = rows.filter((r) => r.op === op);
      if (mine.length)
        say(
          `#   ${op.padEnd(14)} ` +
            mine
              .map((r) => `${formatBytes(r.bytes)} ${r.ofCeiling!.toFixed(2)}|${r.ofCeilingCpu!.toFixed(2)}`)
              .join('  '),
        );
    }
  }
  const totalWrong = rows.reduce((s, r) => s + r.wrong, 0);
  const loadAfter = loadavg()[0]!;
  say(`# wrong results: ${totalWrong}; load average at the end ${loadAfter.toFixed(1)}`);
  if (pg.rank === 0 && cfg.json) {
    mkdirSync(dirname(cfg.json), { recursive: true });
    const doc = {
      bench: 'collectives',
      date: new Date().toISOString(),
      nproc: n,
      cores: cpus().length,
      node: process.version,
      loadAverage: { before: loadBefore, after: loadAfter },
      links,
      config: cfg,
      ceiling,
      ceilingBefore: before,
      ceilingAfter: after,
      pumpTimesUs: pumpTimes,
      pumpCpuUs: pumpCpu,
      rows,
      totalWrong,
    };
    writeFileSync(cfg.json, JSON.stringify(doc, null, 2) + '\n');
    say(`# wrote ${cfg.json}`);
  }
  await pg.destroy();
  if (totalWrong > 0) process.exitCode = 1;
}

await main();
